"""The desktop app: thin Qt adapters over ``quantdesk.core``."""
