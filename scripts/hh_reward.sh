#!/usr/bin/env bash
# A reward model on real human preferences (Anthropic HH-RLHF harmless-base), from a small Llama pretrained on the
# shared corpora, evaluated on a held-out split it never saw; then, for comparison, the same on the embedded
# sentiment task, where a gold judge exists. Run from the repository root:
#
#   scripts/hh_reward.sh
#
# Writes under runs/hh/ (HH_OUT): corpus.txt, tokenizer/, hh.jsonl, split/, pretrain-<time>/, reward/,
# heldout_eval.json; and sentiment/ (data/, split/, tokenizer/, pretrain-<time>/, reward/, heldout_eval.json,
# gold_eval.json). The figures it gave are in docs/reward.md, "Real data: HH-RLHF harmless-base".
#
# Settings (environment variables), for smaller runs such as tests/train/test_reward_real_data.py:
#   HH_OUT=runs/hh          where everything goes; it must not exist yet (nothing is overwritten)
#   HH_CONFIG=configs/hh.toml
#   HH_ROWS=0               use only the first N rows of the HH file (0 = all 1,600)
#   HH_HOLDOUT=0.15 HH_SEED=0   the held-out split (by prompt)
#   HH_CORPORA="tinyshakespeare/input.txt alpaca/alpaca_data_5000_subset.json sst/train.txt"   (under SHARED_DATA)
#   HH_SET="a.b=1 c.d=2"    extra --set overrides for tokenizer, pretrain and reward train (space-separated)
#   HH_SENTIMENT=1          0 skips the sentiment part
#   ALINEA=.venv/bin/alinea SHARED_DATA=../shared/data
set -euo pipefail

OUT=${HH_OUT:-runs/hh}
CONFIG=${HH_CONFIG:-configs/hh.toml}
ROWS=${HH_ROWS:-0}
HOLDOUT=${HH_HOLDOUT:-0.15}
SEED=${HH_SEED:-0}
SENTIMENT=${HH_SENTIMENT:-1}
ALINEA=${ALINEA:-.venv/bin/alinea}
SHARED=${SHARED_DATA:-../shared/data}
HH_FILE=$SHARED/hh-rlhf/harmless-base/train-portion.jsonl.gz
CORPORA=()
for name in ${HH_CORPORA:-tinyshakespeare/input.txt alpaca/alpaca_data_5000_subset.json sst/train.txt}; do
    CORPORA+=("$SHARED/$name")
done
export HF_HUB_OFFLINE=1

fail() { echo "hh_reward.sh: $*" >&2; exit 2; }

[[ -f pyproject.toml && -d src/alinea ]] || fail "run me from the repository root (scripts/hh_reward.sh)."
[[ -d $SHARED ]] || fail "the shared data sets are missing: expected the folder $SHARED beside the repository \
(HH-RLHF, Tiny Shakespeare, Alpaca, SST; see its README.md). Set SHARED_DATA to where they are."
for file in "$HH_FILE" "${CORPORA[@]}"; do
    [[ -f $file ]] || fail "$file is missing from the shared data sets."
done
[[ -x $ALINEA ]] || fail "$ALINEA not found: create the virtual environment first (or set ALINEA)."
[[ -e $OUT ]] && fail "$OUT already exists: move it away or set HH_OUT to a new folder."

SETS=()
for override in ${HH_SET:-}; do SETS+=(--set "$override"); done
step() { echo; echo "== $*"; }
newest() { ls -d "$1"-* | tail -n 1; }  # run folders are named <stage>-<timestamp>
# setting CONFIG FIELD: a field's value after the --set overrides, e.g. setting configs/hh.toml reward.max_len
setting() {
    "$(dirname "$ALINEA")/python" -c 'import functools, sys
from alinea.config import load_config
print(functools.reduce(getattr, sys.argv[2].split("."), load_config(sys.argv[1], sys.argv[3:])))' "$1" "$2" ${HH_SET:-}
}

mkdir -p "$OUT"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

step "1. HH-RLHF pairs -> comparison records (rows with an empty reply are skipped and listed)"
source_file=$HH_FILE
if [[ $ROWS != 0 ]]; then
    source_file=$OUT/hh-first-$ROWS.jsonl
    gzip -dc "$HH_FILE" | { head -n "$ROWS" > "$source_file"; cat > /dev/null; }  # drained: no SIGPIPE for gzip
fi
"$ALINEA" data import "$source_file" -o "$OUT/hh.jsonl" --skip-invalid 2> >(tee "$OUT/import_skipped.txt" >&2)

step "2. held-out split: $HOLDOUT of the prompts, seed $SEED"
"$ALINEA" data split "$OUT/hh.jsonl" --holdout "$HOLDOUT" --seed "$SEED" --by prompt -o "$OUT/split"

step "3. pretraining corpus: the shared corpora and the transcripts of the training side of the split"
"$ALINEA" data text "${CORPORA[@]}" "$OUT/split/train.jsonl" --skip-invalid -o "$OUT/corpus.txt"

step "4. tokenizer"
"$ALINEA" tokenizer train -c "$CONFIG" "${SETS[@]}" --corpus "$OUT/corpus.txt" -o "$OUT/tokenizer"

step "5. pretraining"
time "$ALINEA" pretrain -c "$CONFIG" "${SETS[@]}" --set "pretrain.corpus=$OUT/corpus.txt" \
    --set "pretrain.tokenizer=$OUT/tokenizer" --set "pretrain.runs_dir=$OUT"
base=$(newest "$OUT/pretrain")/final

step "6. reward model on the training side"
time "$ALINEA" reward train -c "$CONFIG" "${SETS[@]}" -m "$base" -d "$OUT/split/train.jsonl" -o "$OUT/reward"

step "7. evaluation on the held-out side"
"$ALINEA" reward eval "$OUT/reward" --data "$OUT/split/heldout.jsonl" --max-len "$(setting "$CONFIG" reward.max_len)" --json \
    --plot "$OUT/heldout_reliability.png" | tee "$OUT/heldout_eval.json"

if [[ $SENTIMENT == 1 ]]; then
    S=$OUT/sentiment
    step "8. the embedded sentiment task (configs/tiny.toml): demo data, split, tokenizer, pretraining"
    "$ALINEA" data demo -c configs/tiny.toml --set "demo_data.out_dir=$S/data"
    "$ALINEA" data split "$S/data/feedback.jsonl" --holdout "$HOLDOUT" --seed "$SEED" -o "$S/split"
    "$ALINEA" tokenizer train -c configs/tiny.toml "${SETS[@]}" --corpus "$S/data/corpus.txt" -o "$S/tokenizer"
    time "$ALINEA" pretrain -c configs/tiny.toml "${SETS[@]}" --set "pretrain.corpus=$S/data/corpus.txt" \
        --set "pretrain.tokenizer=$S/tokenizer" --set "pretrain.runs_dir=$S"

    # The tiny preset trains its reward model for 60 steps of 8 (less than one pass over the training side);
    # 300 steps are five passes and about 2 minutes on an idle 2-core CPU.
    step "9. sentiment reward model, evaluated on its held-out split and on the gold judge's comparisons"
    time "$ALINEA" reward train -c configs/tiny.toml --set reward.max_steps=300 --set reward.eval_every=30 \
        --set reward.save_every=0 "${SETS[@]}" -m "$(newest "$S/pretrain")/final" -d "$S/split/train.jsonl" -o "$S/reward"
    "$ALINEA" reward eval "$S/reward" --data "$S/split/heldout.jsonl" --max-len "$(setting configs/tiny.toml reward.max_len)" --json | tee "$S/heldout_eval.json"
    "$ALINEA" reward eval "$S/reward" --data "$S/data/gold_comparisons.jsonl" --max-len "$(setting configs/tiny.toml reward.max_len)" --json \
        | tee "$S/gold_eval.json"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
