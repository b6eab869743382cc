"""Glue for rule `download`: resolve a dataset's raw files (pmtrec.data.fetch) and write a manifest."""

import json
import sys
from pathlib import Path

from pmtrec.config import load_config
from pmtrec.data import fetch
from pmtrec.errors import PmtrecError
from pmtrec.io import write_json

sm = snakemake  # noqa: F821 (injected by Snakemake)
sys.stderr = sys.stdout = open(sm.log[0], "w")

overrides = [f"{key}={json.dumps(value)}" for key, value in sm.params.sets]
if sm.config.get("mirror"):
    overrides.append(f"dataset.mirror={json.dumps(sm.config['mirror'])}")
try:
    cfg = load_config(overrides=overrides)
    source = cfg["dataset"]["source"]
    section = cfg["dataset"].get(source) or {}
    if isinstance(section.get("files"), dict):  # ciao, epinions: checksummed files (mirror, cache, URL)
        paths = fetch.resolve_files(cfg, source)
    elif source == "amazon":  # user-provided paths or URLs, else the mirror/cache file names
        from pmtrec.data.sources import amazon

        paths = amazon.source_paths(cfg)
    else:  # sources whose files are config keys (custom, recbole, plugins): each key set, path or URL
        from pmtrec.data.sources import source_info

        paths = {key: fetch.resolve_path_or_url(cfg, source, str(section[key]), key)
                 for key in source_info(source).path_keys if section.get(key)}
except PmtrecError as exc:
    name = sm.wildcards.dataset
    print(f"pmtrec: error: {exc} [workflow config: the `mirror` key, or datasets.{name}.run.dataset.<source> "
          "for file paths/URLs; see config/README.md]")
    raise SystemExit(1)

manifest = {"dataset": sm.wildcards.dataset, "source": source,
            "files": {name: {"path": str(p), "sha256": fetch.sha256_file(p), "bytes": Path(p).stat().st_size}
                      for name, p in paths.items()}}  # read by prepare (dataset.manifest): not located again
for name, p in paths.items():
    print(f"{name}: {p} ({manifest['files'][name]['bytes']} bytes, sha256 {manifest['files'][name]['sha256']})")
write_json(sm.output[0], manifest)
