#!/usr/bin/env bash
# The main job: install (scripts/setup_env.sh), then train DAS on the synthetic task with the synthetic bundle,
# test it, write per-input predictions with the picked frames, and draw what the sampler picks.
# Everything lands in ${OUTPUT_DIR:-runs/demo}: model.pt, logs/ (TensorBoard), eval/metrics.csv (the results),
# predictions.csv and figures/. Extra arguments go to every bundle command (e.g. --epochs 3 --sampler_name uniform).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
bundle=bundles/synthetic_das_classification
out=${OUTPUT_DIR:-runs/demo}
run() {
  python -m monai.bundle run --config_file "$1" --bundle_root "$bundle" --output_dir "$out" \
    --meta_file "$bundle/configs/metadata.json" --logging_file "$bundle/configs/logging.conf" "${@:2}"
}
run "$bundle/configs/train.json" --resume auto "$@"  # a rerun continues (or keeps) the finished model
run "['$bundle/configs/train.json','$bundle/configs/evaluate.json']" "$@"
# inference reads files, as in a hospital: 256 new synthetic sequences in the MedMNIST npz layout (its test split)
mkdir -p "$out/inputs"
python -c "from monai_das.data import save_synthetic_npz; save_synthetic_npz('$out/inputs/synthetic.npz', 1, 1, 256, overwrite=True, seed=7)"
run "$bundle/configs/inference.json" --dataset_dir "$out/inputs" "$@"
python -m monai_das.apps.sampling_figure --bundle "$bundle" --figure_dir "$out/figures" --output_dir "$out" "$@"
echo "== test metrics ($out/eval/metrics.csv) =="
cat "$out/eval/metrics.csv"
echo "== TensorBoard: tensorboard --logdir $out ; predictions: $out/predictions.csv ; figures: $out/figures =="
