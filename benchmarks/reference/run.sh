#!/usr/bin/env bash
# Run (or resume) the reference study in a folder outside the repository, with this checkout's
# code frozen at one commit:
#   bash benchmarks/reference/run.sh WORKDIR [TARGET ...]     (default target: all)
# The first call exports the study's commit (benchmarks/reference/STUDY_COMMIT, else HEAD) into
# WORKDIR (its code, workflow and config; the commit goes to WORKDIR/STUDY_COMMIT) and restores the saved parts of reports/reference/runs/
# after preparing the data; later calls resume (Snakemake's incomplete-job tracking on). Jobs
# import WORKDIR's pmtrec (PYTHONPATH), not this checkout's, so later edits here change no run.
# config/reference.yaml is copied again on every call (the Epinions baselines are filled in after
# the other datasets' tuning; adding methods reruns nothing).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:?usage: run.sh WORKDIR [TARGET ...]}
shift
targets=("${@:-all}")
py="$repo/.venv/bin/python"
[ -x "$py" ] || { echo "run.sh: $py missing (make setup)" >&2; exit 2; }
export PMTREC_MIRROR=${PMTREC_MIRROR:-$(cd "$repo/../shared/datasets" && pwd)}
fresh=0
if [ ! -f "$work/STUDY_COMMIT" ]; then
  mkdir -p "$work"
  # the study's code: the commit in benchmarks/reference/STUDY_COMMIT (every sitting, every machine
  # runs the same code), else HEAD (a new study)
  pin="$repo/benchmarks/reference/STUDY_COMMIT"
  commit=$( [ -f "$pin" ] && [ -z "${STUDY_CONFIG:-}" ] && cat "$pin" || git -C "$repo" rev-parse HEAD)
  git -C "$repo" archive "$commit" | tar -x -C "$work"
  echo "$commit" > "$work/STUDY_COMMIT"
  fresh=1
fi
cfg=${STUDY_CONFIG:-config/reference.yaml}   # another config: a rehearsal of this script
mkdir -p "$(dirname "$work/$cfg")"
cp "$repo/$cfg" "$work/$cfg"
parts=${STUDY_PARTS:-$repo/reports/reference/runs}
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
smk=("$py" -m snakemake -d "$work" -s "$work/workflow/Snakefile" --cores 2 --keep-going --rerun-incomplete)
if [ "$fresh" = 1 ] && ls "$parts"/part-*.tar.xz > /dev/null 2>&1; then
  # prepared data first, then the saved results (newer), so that nothing saved reruns
  prepared=$("$py" - "$work" "$cfg" <<'PY'
import sys, yaml
sys.path.insert(0, sys.argv[1])
from pmtrec.study import load_study
study = load_study(yaml.safe_load(open(f"{sys.argv[1]}/{sys.argv[2]}")), f"{sys.argv[1]}/workflow/schemas/config.schema.yaml")
seeds = sorted(set(study.seeds) | set(study.tune_seeds))
from pmtrec.study.paths import prepared_dir
print(" ".join(sorted({study.data_dir(d, s) for d in study.datasets for s in seeds} | {prepared_dir(d) for d in study.datasets})))
PY
)
  # shellcheck disable=SC2086
  "${smk[@]}" $prepared --configfile "$work/$cfg"
  (cd "$repo" && "$py" -m benchmarks.reference.snapshot restore --workdir "$work" --parts "$parts")
fi
exec "${smk[@]}" "${targets[@]}" --configfile "$work/$cfg"
