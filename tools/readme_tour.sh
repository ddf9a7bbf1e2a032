#!/usr/bin/env bash
# The README's command-line tour, scaled down (small data, 3 training steps), from this checkout:
#   make install && tools/readme_tour.sh [WORKDIR]
# Every command of the tour runs with the flags the README shows; it stops at the first that fails, printing its
# output. Then the standard loaders (datasets, pandas, pyarrow) read the datasets it made with no arguments.
# About 2.5 minutes on 2 cores. Tiny untrained models: the captions are garbage, the card says so.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$repo/.venv/bin:$PATH HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
work=${1:-$(mktemp -d -t plip-tour-XXXX)}
mkdir -p "$work" && cd "$work"
run() {
  echo "+ plip $*"
  local t0; t0=$(date +%s)
  plip "$@" > last.out 2>&1 || { cat last.out; echo "FAILED: plip $*"; exit 1; }
  tail -n 3 last.out
  echo "  ($(( $(date +%s) - t0 )) s)"
}
run --version
run render --out data/procpedes --identities 24 --images-per-identity 4 --seed 0 --contact-sheet sheet.png --workers 2
run render --out raw/cuhk --format cuhk-pedes --identities 12 --workers 2
run render --out raw/folder --format image-folder --identities 12 --images-per-identity 4 --workers 2
run import images raw/folder --out data/luperson-nl --shard-size 256MB --workers 2
run import cuhk-pedes raw/cuhk --out data/cuhk --workers 2
run export synth-pedes-json data/procpedes --out release/
run spac train-recognizer --data data/procpedes --out runs/recognizer --max-steps 3
run spac train --data data/procpedes --out runs/spac --config tiny --max-steps 3
run spac caption --checkpoint runs/spac $(ls raw/folder/*/*.jpg | head -2)
run spac calibrate --captioner runs/spac --recognizers classifier:runs/recognizer --data data/procpedes \
  --split val --out runs/calibration.json
synth=(synth --data data/luperson-nl --captioner runs/spac --out data/synth --recognizers classifier:runs/recognizer
       --calibration runs/calibration.json --workers 2)
run "${synth[@]}"
run "${synth[@]}"  # a finished job: "already complete"
run filter data/synth --out data/synth-filtered --min-images 2 --workers 2
run card data/synth-filtered --truth raw/folder/ground-truth.jsonl --workers 2
run train --data data/synth-filtered --out runs/plip --config tiny --max-steps 3
run eval --checkpoint runs/plip --data data/cuhk --split test
run eval --config tiny --data data/cuhk --out base.json
run finetune text-reid --init runs/plip --data data/cuhk --out runs/cuhk-ft --eval-data data/procpedes \
  --max-steps 3 --batch-size 8
run finetune text-reid --config tiny --data data/cuhk --out runs/cuhk-10 --train-fraction 0.5 --max-steps 2 \
  --batch-size 8
run render --out raw/market --format market1501 --identities 12 --images-per-identity 6 --workers 2
run import market1501 raw/market --out data/market --workers 2
run finetune image-reid --init runs/plip --data data/market --out runs/market-bot --rerank --max-steps 2 \
  --batch-size 8
run embed --checkpoint runs/plip --data data/cuhk --out emb.parquet
run validate data/luperson-nl
run validate --data data/synth-filtered --verify quick
run env
python - <<'PY'
import datasets, pandas as pd, pyarrow.dataset as pads
for d in ("data/procpedes", "data/luperson-nl", "data/cuhk", "data/synth-filtered"):
    ds = datasets.load_dataset(d)  # no other argument: the usable rows, one split per split value
    print(d, {k: len(v) for k, v in ds.items()}, "pandas", len(pd.read_parquet(f"{d}/data")),
          "pyarrow", pads.dataset(f"{d}/data").count_rows())
PY
echo "tour OK: $work"
