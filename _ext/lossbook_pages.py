"""Sphinx extension (a Jupyter Book ``local_extensions`` entry): pages that need no network and log no errors.

By default the pages load MathJax, require.js and the ipywidgets HTML manager from public CDNs, so
offline the math shows as raw TeX and the widgets stay blank. This extension serves all three from the
book's own ``_static/``:

* **MathJax 3.2.2** (SVG output, so no web fonts are needed, which also works from ``file://``), from
  the ``django-static-mathjax`` wheel (a plain copy of MathJax's ``es5/`` components; imported as
  ``mathjax``, with no Django dependency). The combined component plus the pieces it loads on demand
  (TeX extensions, the menu, accessibility) are copied to ``_static/offline/mathjax/``.
* **require.js** and **@jupyter-widgets/html-manager**'s ``embed-amd.js`` (with the icon fonts it
  loads from beside itself), fetched once from npm at the versions pinned in :data:`NPM` by
  ``make setup`` (``python _ext/lossbook_pages.py fetch``) into ``.web-assets/``, checked against the
  pinned sha256 of every file, and copied to ``_static/offline/``. myst-nb's ``nb_ipywidgets_js`` is
  pointed at those copies.

A missing asset fails the build with the command that provides it. Versions and licences: the
folder ``.web-assets/VERSIONS.json`` and the licence files copied beside each asset.

It also keeps the browser console clean: sphinx-thebe registers its configuration script twice (a
``const`` declared twice is a SyntaxError on every page), so repeated scripts are dropped from each
page; and the theme's ``default_mode`` is set in ``html_context`` ("auto"), without which pydata-sphinx-theme logs
"Got invalid theme mode" on every page.

The Binder/Colab launch buttons of ``_config.yml``'s ``launch_buttons:`` are kept only while
``repository: url:`` names a repository: with an empty url sphinx-book-theme fails the build, and with no
``repository:`` Jupyter Book fills in its own repository, so the buttons would launch the wrong one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB_ASSETS = Path(os.environ.get("LOSSBOOK_WEB_ASSETS", ROOT / ".web-assets"))

MATHJAX_VERSION = "3.2.2"
MATHJAX_SCRIPT = "tex-mml-svg.js"
# The combined component and what it loads on demand: TeX extensions (\require, autoload), the
# context menu, and the accessibility pieces the menu can switch on (speech rules in sre/).
MATHJAX_PARTS = [MATHJAX_SCRIPT, "input/tex/extensions", "input/mml/extensions", "ui", "a11y", "sre", "adaptors"]

# npm package -> (version, {file in the package: sha256}); licences are copied too.
NPM = {
    "requirejs": ("2.3.8", {
        "require.js": "c1fc6b1d53af7522f78d664922abb32acac64ed0ecccb8f907f1e6fc7262563a",
    }),
    "@jupyter-widgets/html-manager": ("1.0.6", {
        "dist/embed-amd.js": "b129dee93e124bd7cdc2e1a50f3074029f37de34ace5e2a941e345b28c76d06f",
        "dist/1551f4f60c37af51121f.woff2": "9834b82ad26e2a37583d22676a12dd2eb0fe7c80356a2114d0db1aa8b3899537",
        "dist/7a3337626410ca2f4071.woff2": "e42a88444448ac3d60549cc7c1ff2c8a9cac721034c073d80a14a44e79730cca",
        "dist/d878b0a6a1144760244f.woff2": "8ea8791754915a898a3100e63e32978a6d1763be6df8e73a39d3a90d691cdeef",
        "dist/2285773e6b4b172f07d9.woff": "f9217f66874b0c01cd8c10b6a295dbc4f609acb6f5adc41c37da46641b57eb02",
        "dist/bb58e57c48a3e911f15f.woff": "cb9e9e693192413cde2b1f21c1dc1d44b6fe7b27cc2b458e8b359d18f9ff8f4e",
        "dist/eeccf4f66002c6f2ba24.woff": "3f6d3488cf65374f6f676c315340b0ac2be832bd55240c809448e36ef9b96326",
        "dist/embed.js.LICENSE.txt": "73df0228bbcbed120492856e6edb4d0e234a16efacec66a48e303a978795b7c4",
        "LICENSE": "e5ac2be30b2bcefe330ee9e5ad7fe5b0d1156fecb3555fcaaa908a8d29f9fded",
    }),
}
LICENSES = {"requirejs": ["LICENSE", "README.md"]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder(package: str) -> str:
    return package.replace("@", "").replace("/", "__")


# ---------------------------------------------------------------- fetching (make setup)
def fetch(dest: Path = WEB_ASSETS, npm: str = "npm") -> None:
    """Download the pinned npm packages with ``npm pack`` and keep the files the book serves."""
    if shutil.which(npm) is None:
        raise SystemExit("lossbook_pages: npm is needed once to fetch require.js and the ipywidgets HTML "
                         "manager (apt-get install npm, or conda install nodejs); then the book builds offline.")
    dest.mkdir(parents=True, exist_ok=True)
    versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package, (version, files) in NPM.items():
            spec = f"{package}@{version}"
            out = subprocess.run([npm, "pack", spec, "--json", "--pack-destination", tmp], check=True,
                                 capture_output=True, text=True).stdout
            info = json.loads(out)[0]
            target = dest / _folder(package)
            shutil.rmtree(target, ignore_errors=True)
            with tarfile.open(Path(tmp) / info["filename"]) as tar:
                members = {m.name.removeprefix("package/"): m for m in tar.getmembers()}
                wanted = list(files) + [f for f in LICENSES.get(package, []) if f in members]
                for name in wanted:
                    if name not in members:
                        raise SystemExit(f"lossbook_pages: {spec} has no {name}")
                    data = tar.extractfile(members[name]).read()
                    digest = hashlib.sha256(data).hexdigest()
                    pinned = files.get(name)
                    if pinned is not None and digest != pinned:
                        raise SystemExit(f"lossbook_pages: {spec}/{name} has sha256 {digest}, expected {pinned}")
                    path = target / Path(name).name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            versions[package] = {"version": version, "integrity": info.get("integrity"),
                                 "files": {Path(n).name: _sha256(target / Path(n).name) for n in wanted}}
            print(f"lossbook_pages: {spec} -> {target}")
    (dest / "VERSIONS.json").write_text(json.dumps(versions, indent=1) + "\n")


def fetched(dest: Path = WEB_ASSETS) -> bool:
    """Whether ``dest`` holds the pinned versions (what ``make setup`` checks before fetching)."""
    try:
        versions = json.loads((dest / "VERSIONS.json").read_text())
    except (OSError, ValueError):
        return False
    return all(versions.get(p, {}).get("version") == v for p, (v, _) in NPM.items())


# ---------------------------------------------------------------- the Sphinx side
def mathjax_es5() -> Path:
    """MathJax's ``es5/`` folder from the installed ``django-static-mathjax`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("lossbook_pages: MathJax is not installed; pip install 'lossbook[book]' "
                           "(it brings django-static-mathjax, a copy of MathJax 3).")
    base = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    version = json.loads((base / "package.json").read_text())["version"]
    if version.split(".")[:2] != MATHJAX_VERSION.split(".")[:2]:  # 3.2.x: the same files and config
        raise RuntimeError(f"lossbook_pages: MathJax {version} is installed; the book is set up for "
                           f"{MATHJAX_VERSION} (pip install 'django-static-mathjax>=3.2.2,<3.3').")
    return base / "es5"


STATIC = "offline"  # the folder under the build's _static/ that holds the copies
REQUIRE_JS = f"{STATIC}/requirejs/require.js"
EMBED_JS = f"{STATIC}/jupyter-widgets__html-manager/embed-amd.js"
_REQUIRE_PATHS = (
    'require.config({paths: {"@jupyter-widgets/html-manager/dist": new URL('
    '"../jupyter-widgets__html-manager", document.querySelector(\'script[src*="requirejs/require.js"]\').src'
    ').href}});'
)


def _configure(app, config) -> None:
    config.mathjax_path = f"{STATIC}/mathjax/{MATHJAX_SCRIPT}"  # relative: under the build's _static/
    # myst-nb adds these to pages with widget state; relative paths are under _static/ too. No
    # crossorigin attribute: it would make file:// pages refuse the scripts.
    config.nb_ipywidgets_js = {REQUIRE_JS: {}, EMBED_JS: {}}


def _theme_mode(app, config) -> None:
    context = dict(config.html_context or {})  # pydata-sphinx-theme reads default_mode from here
    context.setdefault("default_mode", "auto")
    config.html_context = context


# What Jupyter Book 1.x puts in ``repository.url`` when _config.yml has no ``repository:``.
_JB_DEFAULT_REPOSITORY = "https://github.com/executablebooks/jupyter-book"


def _launch_buttons(app, config) -> None:
    options = dict(config.html_theme_options or {})
    url = str(options.get("repository_url") or "").strip().rstrip("/")
    if options.get("launch_buttons") and url in ("", _JB_DEFAULT_REPOSITORY):
        options["launch_buttons"] = {}
        config.html_theme_options = options


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        # the same script at two priorities is still the same script
        key = (getattr(script, "filename", None) or None, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique
    # The widget manager computes where its icon fonts are from its require.js module name, which is
    # resolved against the page; map that name onto the copy served beside embed-amd.js.
    for i, script in enumerate(scripts):
        if str(getattr(script, "filename", "") or "").endswith(REQUIRE_JS):
            scripts.insert(i + 1, type(script)(None, priority=script.priority, body=_REQUIRE_PATHS))
            break


def _check_assets(app) -> None:
    if app.builder.format != "html":
        return
    mathjax_es5()  # raises with the fix when it is missing
    if not fetched():
        raise RuntimeError(f"lossbook_pages: require.js and the ipywidgets HTML manager are not in {WEB_ASSETS}; "
                           f"run `make setup` (or `{Path(sys.executable).name} _ext/lossbook_pages.py fetch`).")


def _copy_assets(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static" / STATIC
    shutil.rmtree(static, ignore_errors=True)
    es5 = mathjax_es5()
    target = static / "mathjax"
    for part in MATHJAX_PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / part)
    shutil.copy2(es5.parent / "LICENSE", target / "LICENSE")
    for folder in WEB_ASSETS.iterdir():
        if folder.is_dir():
            shutil.copytree(folder, static / folder.name)
    shutil.copy2(WEB_ASSETS / "VERSIONS.json", static / "VERSIONS.json")


def setup(app):
    app.connect("config-inited", _configure, priority=900)
    app.connect("config-inited", _theme_mode, priority=900)
    app.connect("config-inited", _launch_buttons, priority=900)
    app.connect("html-page-context", _unique_scripts, priority=900)
    app.connect("builder-inited", _check_assets)
    app.connect("build-finished", _copy_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    if sys.argv[1:2] == ["fetch"]:
        fetch()
    elif sys.argv[1:2] == ["check"]:
        sys.exit(0 if fetched() else 1)
    else:
        print("usage: python _ext/lossbook_pages.py fetch|check", file=sys.stderr)
        sys.exit(2)
