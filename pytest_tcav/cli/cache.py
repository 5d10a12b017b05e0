"""``pytest-tcav cache export FILE`` / ``pytest-tcav cache import FILE``: a disk cache carried as one file.

CI jobs start on fresh machines; a warm cache makes their concept tests
compute nothing that an earlier job already computed.  ``export`` writes the
cache a pytest run in this project uses (``tcav_cache_dir``, else
``.pytest_cache/d/tcav`` under the ini file's folder) into one archive, which
CI keeps as an artifact; ``import`` checks such an archive and adds its entries
to the cache here.  What is checked, and how, is in
:mod:`pytest_tcav.storage.archive`.

Exit status: 0 done, 1 the archive was refused or could not be written (the
reason on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from pytest_tcav.cli.inifile import find_inifile, pytest_config, read_inifile
from pytest_tcav.cli.usage import UsageError
from pytest_tcav.config import TCAVConfig, build_config, parse_size
from pytest_tcav.errors import ConfigurationError

CACHE_EPILOG = """\
examples:
  pytest-tcav cache export tcav-cache.tar          # after the tests, in the job that computed them
  pytest-tcav cache import tcav-cache.tar          # before the tests, in the next job or on another machine
  pytest-tcav cache export --cache-dir /shared/tcav cache.tar.gz

The cache is the one pytest uses here: --cache-dir, else tcav_cache_dir in the ini file, else
.pytest_cache/d/tcav next to the ini file (pytest's cache_dir ini key is honoured).
Exit status: 0 done, 1 refused or failed (reason on stderr), 2 usage error.
"""


def add_cache_parser(commands: Any) -> None:
    """``pytest-tcav cache export|import FILE``."""
    parser = commands.add_parser(
        "cache", help="export the disk cache to one archive, or import one (carry a warm cache between CI jobs)",
        description="Carry the TCAV disk cache between CI jobs or machines as one archive file: export writes "
                    "every sound entry with a manifest; import verifies the archive (names, sizes, checksums) "
                    "before adding its entries, keeping the entries already there.",
        epilog=CACHE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    for action, text in (("export", "write the cache's entries to FILE (.tar; .tar.gz or .tgz: compressed)"),
                         ("import", "check FILE and add its entries to the cache")):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("file", metavar="FILE", help="the archive")
        sub.add_argument("--cache-dir", metavar="DIR", help="the cache folder (default: as pytest would use it)")
        if action == "import":
            sub.add_argument("--max-entry-size", metavar="SIZE",
                             help="refuse an archive with an entry larger than this, e.g. 500MB "
                                  "(default: the cache's bound, tcav_cache_size)")
        ini = sub.add_mutually_exclusive_group()
        ini.add_argument("--inifile", metavar="PATH", help="read tcav_cache_dir and tcav_cache_size from this file "
                                                            "(default: the file pytest would use)")
        ini.add_argument("--no-inifile", action="store_true", help="read no ini file")


def _settings(args: argparse.Namespace) -> tuple[Path, TCAVConfig]:
    """The cache folder and the settings (for its bound and locks), found as a pytest run here finds them."""
    raw: dict[str, tuple[Any, str]] = {}
    root = Path.cwd()
    pytest_cache_dir = ".pytest_cache"
    inifile = None if args.no_inifile else Path(args.inifile) if args.inifile else find_inifile(Path.cwd())
    if inifile is not None:
        label = "--inifile" if args.inifile else str(inifile)
        raw.update(read_inifile(inifile, label)[0])
        root = inifile.resolve().parent
        pytest_cache_dir = str((pytest_config(inifile, label) or {}).get("cache_dir") or pytest_cache_dir)
    try:
        config = build_config(raw, root=root)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    if args.cache_dir:
        return Path(args.cache_dir).expanduser().resolve(), config
    if config.cache_dir is not None:
        return config.cache_dir, config
    return root / os.path.expanduser(os.path.expandvars(pytest_cache_dir)) / "d" / "tcav", config


def _size(number: int) -> str:
    for unit, scale in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if number >= scale:
            return f"{number / scale:.1f} {unit}"
    return f"{number} bytes"


def run_cache(args: argparse.Namespace, stdout: TextIO) -> int:
    """Export or import; prints what was done (counts and bytes)."""
    from pytest_tcav.storage.archive import export_cache, import_cache

    folder, config = _settings(args)
    file = Path(args.file).expanduser()
    if args.cache_action == "export":
        if not folder.is_dir():
            raise UsageError(f"no cache at {folder} (run the tests first, or name it with --cache-dir)")
        done = export_cache(folder, file)
        left = [f"{n} {why}" for n, why in ((done.stale, "from another environment"), (done.corrupt, "corrupt"))
                if n]
        stdout.write(f"exported {done.entries} entries ({_size(done.bytes)}) from {folder} to {file}"
                     + (f"; left out {', '.join(left)}" if left else "") + "\n")
        return 0
    limit = config.cache_size
    if args.max_entry_size:
        try:
            limit = parse_size(args.max_entry_size)
        except ConfigurationError as exc:
            raise UsageError(f"--max-entry-size: {exc}") from None
    result = import_cache(folder, file, max_bytes=config.cache_size, max_entry_bytes=limit, lock=config.cache_lock)
    notes = [f"{n} {why}" for n, why in ((result.present, "already there, kept"),
                                         (result.stale, "from another environment (pytest-tcav, torch, numpy or "
                                                        "Python version), skipped"),
                                         (result.evicted, "older entries evicted to stay under tcav_cache_size"))
             if n]
    stdout.write(f"imported {result.entries} entries ({_size(result.bytes)}) from {file} into {folder}"
                 + (f"; {'; '.join(notes)}" if notes else "") + "\n")
    return 0
