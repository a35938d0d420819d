; Inno Setup 6.3+ script for QuantDesk on Windows (x64). Run through `python installer/build.py windows`,
; which builds the PyInstaller folder first and passes the /D defines below (installer/appmeta.py,
; iss_defines). By hand, from the repository root (relative paths are read from this script's folder):
;   ISCC /DAppName=QuantDesk /DAppId=io.github.quantdesk.QuantDesk /DAppVersion=0.1.0
;        /DAppNumericVersion=0.1.0.0 /DAppPublisher="QuantDesk contributors"
;        /DAppCopyright="Copyright (c) QuantDesk contributors" /DBundleDir=..\dist\quantdesk
;        /DOutputDir=..\dist /DIconFile=..\resources\icons\quantdesk.ico installer\quantdesk.iss
; Installs per user by default (no UAC prompt); the dialog offers all users. The data folder
; (%LOCALAPPDATA%\QuantDesk: models, chats) is left alone on uninstall: models are large and costly
; to download again.

#if Ver < EncodeVer(6, 3, 0)
  #error Inno Setup 6.3 or later is needed (ArchitecturesAllowed=x64compatible)
#endif
#ifndef AppName
  #error Define AppName, AppId, AppVersion, AppNumericVersion, AppPublisher, AppCopyright, BundleDir, OutputDir and IconFile (installer/build.py does).
#endif

[Setup]
AppId={#AppId}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppPublisher}
AppCopyright={#AppCopyright}
; setup.exe's own version resource (Inno's default is 0.0.0.0)
VersionInfoVersion={#AppNumericVersion}
VersionInfoProductTextVersion={#AppVersion}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename={#AppName}-{#AppVersion}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\QuantDesk.exe
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole PyInstaller folder: QuantDesk.exe (the window), quantdesk-cli.exe (the CLI, and the
; process llama.cpp runs in) and _internal\.
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\QuantDesk.exe"; Comment: "Run a local LLM that fits this machine"; AppUserModelID: "{#AppId}"
Name: "{group}\{#AppName} command prompt"; Filename: "{cmd}"; Parameters: "/k quantdesk-cli.exe --help"; WorkingDir: "{app}"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\QuantDesk.exe"; Tasks: desktopicon; AppUserModelID: "{#AppId}"

[Run]
Filename: "{app}\QuantDesk.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
