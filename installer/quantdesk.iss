; Inno Setup 6 script for QuantDesk on Windows (x64). Run through `python installer/build.py windows`,
; which builds the PyInstaller folder first and passes the /D defines below; by hand:
;   ISCC /DAppName=QuantDesk /DAppId=io.github.quantdesk.QuantDesk /DAppVersion=0.1.0
;        /DAppPublisher="QuantDesk contributors" /DBundleDir=dist\quantdesk /DOutputDir=dist
;        /DIconFile=resources\icons\quantdesk.ico installer\quantdesk.iss
; Installs per user by default (no UAC prompt); the dialog offers all users. The data folder
; (%LOCALAPPDATA%\QuantDesk: models, chats) is left alone on uninstall: models are large and costly
; to download again.

#ifndef AppName
  #error Define AppName, AppId, AppVersion, AppPublisher, BundleDir, OutputDir and IconFile (installer/build.py does).
#endif

[Setup]
AppId={#AppId}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppPublisher}
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
