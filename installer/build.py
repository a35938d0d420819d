"""Build QuantDesk's bundle and installer for this OS — one command per OS:

    python installer/build.py linux     # dist/quantdesk/ and dist/quantdesk_VERSION_ARCH.deb
    python installer/build.py windows   # dist\\quantdesk\\ and dist\\QuantDesk-VERSION-setup.exe (Inno Setup 6.3+)
    python installer/build.py macos     # dist/QuantDesk.app and dist/QuantDesk-VERSION.dmg

PyInstaller cannot cross-build, so each runs on its own OS. ``build-info.json`` in the output
folder records the sizes and the time taken.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import appmeta

ROOT = appmeta.ROOT
SPEC = ROOT / "installer" / "quantdesk.spec"


# The GPU backend each installer ships (installer/build_llama.py builds it): Vulkan drives NVIDIA,
# AMD and Intel GPUs on Linux and Windows; macOS has Metal.
GPU_BACKEND = {"linux": "vulkan", "windows": "vulkan", "macos": "metal"}
LIB_PATTERN = {"linux": "lib{}.so", "windows": "{}.dll", "macos": "lib{}.dylib"}


def check_llama_runtime(target: str, lib_dir: Path | None = None) -> list[str]:
    """What is wrong with the llama-cpp-python this bundle would ship; empty when it is portable.

    pip's own source build is ``-march=native`` and CPU-only: bundled, it dies with SIGILL on CPUs
    older than the build machine's and never uses a GPU. (macOS builds for Apple's own chips, which
    need no CPU variants.)"""
    if lib_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            return ["llama-cpp-python is not installed"]
        lib_dir = Path(next(iter(spec.submodule_search_locations))) / "lib"
    names = {p.name for p in lib_dir.iterdir()} if lib_dir.is_dir() else set()
    pattern = LIB_PATTERN[target]
    variant_prefix = pattern.format("ggml-cpu-").rsplit(".", 1)[0]
    problems = []
    if target != "macos" and not any(n.startswith(variant_prefix) for n in names):
        problems.append("no CPU backend variants (a -march=native build, which crashes on older CPUs)")
    gpu_lib = pattern.format(f"ggml-{GPU_BACKEND[target]}")
    if gpu_lib not in names:
        problems.append(f"no {GPU_BACKEND[target]} backend ({gpu_lib})")
    return problems


def run_pyinstaller(dist: Path, work: Path) -> None:
    """The spec, with this source tree first on the path, whatever copy of quantdesk is installed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
                    "--distpath", str(dist), "--workpath", str(work), str(SPEC)], check=True, env=env, cwd=ROOT)


def strip_python(bundle: Path) -> None:
    """Strip CPython's own library and extension modules (pyenv and many distros keep their symbols:
    ~20 MB). Wheels' libraries are left alone: stripping a patchelf-edited library can break it."""
    strip = shutil.which("strip")
    if not strip:
        return
    internal = bundle / "_internal"
    targets = list(internal.glob("libpython3*.so*")) + list(internal.glob("python3*/lib-dynload/*.so"))
    for path in targets:
        if path.is_file() and not path.is_symlink():
            subprocess.run([strip, "--strip-unneeded", str(path)], check=True)


def tree_size(path: Path) -> int:
    return sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(path) for f in files)


def build_linux(dist: Path, work: Path, meta: appmeta.AppMeta) -> dict[str, object]:
    import linux_deb

    bundle = dist / meta.executable
    strip_python(bundle)
    root = linux_deb.stage(meta, bundle, work / "deb-root")
    deb = linux_deb.build_deb(root, dist / f"{meta.executable}_{appmeta.deb_version(meta)}_{linux_deb.deb_arch()}.deb")
    return {"bundle": str(bundle), "installer": str(deb)}


def find_iscc() -> str | None:
    """Inno Setup's compiler: on the PATH, or where its installer puts it."""
    found = shutil.which("ISCC")
    if found:
        return found
    for var in ("ProgramFiles(x86)", "ProgramFiles"):
        if os.environ.get(var) and (candidate := Path(os.environ[var]) / "Inno Setup 6" / "ISCC.exe").is_file():
            return str(candidate)
    return None


def build_windows(dist: Path, work: Path, meta: appmeta.AppMeta) -> dict[str, object]:
    iscc = find_iscc()
    if not iscc:
        raise SystemExit("Inno Setup 6.3 or later (ISCC.exe) not found: install it from https://jrsoftware.org/isinfo.php")
    bundle = dist / meta.executable
    defines = appmeta.iss_defines(meta, bundle, dist, ROOT / "resources" / "icons" / "quantdesk.ico")
    subprocess.run([iscc, *(f"/D{k}={v}" for k, v in defines.items()), str(ROOT / "installer" / "quantdesk.iss")],
                   check=True)
    return {"bundle": str(bundle), "installer": str(dist / f"{meta.name}-{meta.version}-setup.exe")}


def build_macos(dist: Path, work: Path, meta: appmeta.AppMeta) -> dict[str, object]:
    app = dist / f"{meta.name}.app"
    # PyInstaller ad-hoc signs the bundle; a signature broken by a later change would make macOS
    # refuse to start the app with a vague "damaged" message, so check it here instead.
    subprocess.run(["codesign", "--verify", "--deep", "--strict", str(app)], check=True)
    staging = work / "dmg"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    subprocess.run(["ditto", str(app), str(staging / app.name)], check=True)  # keeps symlinks and signatures
    os.symlink("/Applications", staging / "Applications")  # drag the app onto it
    dmg = dist / f"{meta.name}-{meta.version}.dmg"
    dmg.unlink(missing_ok=True)
    subprocess.run(["hdiutil", "create", "-volname", meta.name, "-srcfolder", str(staging), "-ov",
                    "-format", "UDZO", str(dmg)], check=True)
    subprocess.run(["hdiutil", "verify", str(dmg)], check=True)  # the image's own checksum
    return {"bundle": str(app), "installer": str(dmg)}


BUILDERS = {"linux": build_linux, "windows": build_windows, "macos": build_macos}
HOST = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(BUILDERS))
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller's work folder (default: build/)")
    parser.add_argument("--reuse-bundle", action="store_true",
                        help="package the bundle already in --dist instead of running PyInstaller again")
    args = parser.parse_args(argv)
    if args.target != HOST:
        parser.error(f"PyInstaller builds only for the OS it runs on; this is {HOST or sys.platform}")
    problems = check_llama_runtime(args.target)
    if problems:
        raise SystemExit("the installed llama-cpp-python is not the portable build the installers ship: "
                         + "; ".join(problems) + f". Build and install it first: python installer/build_llama.py "
                         f"--gpu {GPU_BACKEND[args.target]} --install")
    meta = appmeta.load()
    dist, work = args.dist.resolve(), args.work.resolve()
    t0 = time.monotonic()
    if not args.reuse_bundle:
        run_pyinstaller(dist, work)
    t_bundle = time.monotonic() - t0
    result = BUILDERS[args.target](dist, work, meta)
    info = {"target": args.target, "version": meta.version, **result,
            "bundle_bytes": tree_size(Path(result["bundle"])),
            "installer_bytes": Path(result["installer"]).stat().st_size,
            "bundle_seconds": round(t_bundle, 1), "total_seconds": round(time.monotonic() - t0, 1)}
    (dist / "build-info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"bundle    {result['bundle']}  {info['bundle_bytes'] / 2**20:.1f} MiB")
    print(f"installer {result['installer']}  {info['installer_bytes'] / 2**20:.1f} MiB")
    print(f"built in {info['total_seconds']:.0f} s (PyInstaller {info['bundle_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
