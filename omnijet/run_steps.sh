# OmniJet-alpha steps for run_all.sh (sourced; see the header of run_all.sh for `step`, CFG, OUT, JETCLASS, PY, PY1).
#
# tokenisers (every $CFG/tokenizer*.yaml: the conditional VQ-VAE of the profile, the codebook ladder, the MLP and
# binned baselines) -> token-quality table -> token sequences of top + QCD jets -> GPT pretraining -> sampling ->
# generation table -> top vs QCD fine-tuning grid (modes x labelled jets per class x seeds) -> tables.
omnijet_steps() {
  need_data jetclass
  local d="data.root=$JETCLASS"
  local f name s tokenizers=""
  # mini: the tokenisers that the token-quality claims compare (smallest and largest conditional codebook, the
  # unconditional MLP and the conditional one of its codebook size, 512) are trained with seeds 0 (their config), 1
  # and 2; every other tokeniser once
  local seeded=""
  [[ "$PROFILE" == mini ]] && seeded=" tokenizer tokenizer_128 tokenizer_2048 tokenizer_mlp "
  for f in "$CFG"/tokenizer*.yaml; do
    name="$(basename "$f" .yaml)"
    tokenizers="$tokenizers,$name"
    step "$name" -- $PY -m omnijet.train_tokenizer --config "$f" --out "$OUT/$name" "$d"
    if [[ "$seeded" == *" $name "* ]]; then
      for s in 1 2; do
        tokenizers="$tokenizers,${name}_seed$s"
        step "${name}_seed$s" -- $PY -m omnijet.train_tokenizer --config "$f" --out "$OUT/${name}_seed$s" "$d" "seed=$s"
      done
    fi
  done
  step token_quality --tables omnijet.token_quality --after "${tokenizers#,}" -- \
    $PY1 -m omnijet.token_quality --config "$CFG/token_quality.yaml" --out "$OUT/token_quality" "$d" \
    "runs_dir=$OUT"
  step tokenize --after tokenizer -- \
    $PY1 -m omnijet.tokenize_dataset --config "$CFG/pretrain.yaml" --out "$OUT/tokens" "$d" \
    "tokenizer_dir=$OUT/tokenizer"
  step pretrain --after tokenize -- \
    $PY -m omnijet.pretrain --config "$CFG/pretrain.yaml" --out "$OUT/pretrain" "$d" \
    "tokenizer_dir=$OUT/tokenizer" "tokens_dir=$OUT/tokens"
  # mini and smoke: the transfer claim (fine-tuned vs scratch) is replicated over GPT pretraining runs (claims.yaml
  # `replicate: pretraining`): seeds 1, 2 in pretrain_seed<S> on the same tokeniser and token sequences, each
  # fine-tuned (mode finetune) with the one fine-tuning seed S into finetune/finetune_seed<S>. paper: one GPT
  local rseeds="$RSEEDS"  # run_all.sh --pretrain-runs
  for s in $rseeds; do
    step "pretrain_seed$s" --after tokenize -- \
      $PY -m omnijet.pretrain --config "$CFG/pretrain.yaml" --out "$OUT/pretrain_seed$s" "$d" \
      "tokenizer_dir=$OUT/tokenizer" "tokens_dir=$OUT/tokens" "seed=$s"
  done
  step generate --after tokenizer,pretrain -- \
    $PY1 -m omnijet.generate --config "$CFG/generate.yaml" --out "$OUT/generate" "$d" \
    "pretrain_dir=$OUT/pretrain" "tokenizer_dir=$OUT/tokenizer"
  step eval_generation --tables omnijet.generation --after generate -- \
    $PY1 -m omnijet.evaluate_generation --config "$CFG/generate.yaml" --out "$OUT/eval_generation" "$d" \
    "generated_dir=$OUT/generate" "tokenizer_dir=$OUT/tokenizer"
  local mode
  for mode in scratch fixed finetune; do  # mini: the frozen backbone, which no claim compares, with one seed
    step "finetune_$mode" --tables omnijet.classification --after tokenizer,pretrain -- \
      $PY -m omnijet.finetune --config "$CFG/finetune.yaml" --out "$OUT/finetune/$mode" "$d" \
      "finetune.mode=$mode" "pretrain_dir=$OUT/pretrain" "tokenizer_dir=$OUT/tokenizer" \
      $( [[ "$PROFILE" == mini && "$mode" == fixed ]] && echo "finetune.seeds=[0]" )
  done
  for s in $rseeds; do
    step "finetune_finetune_seed$s" --tables omnijet.classification --after "tokenizer,pretrain_seed$s" -- \
      $PY -m omnijet.finetune --config "$CFG/finetune.yaml" --out "$OUT/finetune/finetune_seed$s" "$d" \
      "finetune.mode=finetune" "pretrain_dir=$OUT/pretrain_seed$s" "tokenizer_dir=$OUT/tokenizer" "finetune.seeds=[$s]"
  done
  # the jet-observables floor: the fine-tuning runs' labelled subsets and seeds (python -m common.results.floor)
  step floor_classification --tables omnijet.classification --after "" -- $PY1 -m common.results.floor \
    --table omnijet.classification --config "$CFG/finetune.yaml" --out "$OUT/floor/classification" \
    --profile "$PROFILE" "$d"
  # the other head of the OJ configs: summation (the 2025 example config); no claim: paper, and mini with --table
  # omnijet.classification_sum only (the default run's 2-hour budget)
  if [[ "$PROFILE" == paper || ( "$PROFILE" == mini && "$TABLE" == omnijet.classification_sum ) ]]; then
    step finetune_sum --tables omnijet.classification_sum --after tokenizer,pretrain -- \
      $PY -m omnijet.finetune --config "$CFG/finetune.yaml" --out "$OUT/finetune/finetune_sum" "$d" \
      "finetune.mode=finetune" "head=sum" "pretrain_dir=$OUT/pretrain" "tokenizer_dir=$OUT/tokenizer" \
      $( [[ "$PROFILE" == mini ]] && echo "finetune.seeds=[0]" )
  fi
  local init  # "Which pretraining?" (common/results/compare.py): the same compare set as every method (run_all.sh COMPARE_DATA)
  for init in pretrained random; do
    step "embed_gpt_$init" --tables compare.which_pretraining --after tokenizer,pretrain -- \
      $PY1 -m omnijet.embed --config "$CFG/finetune.yaml" --out "$OUT/embed/gpt_$init" --name "OmniJet-alpha (GPT)" \
      --finetune-grid "$COMPARE_FINETUNE_GRID" \
      $( [[ $init == random ]] && echo --random-init ) "pretrain_dir=$OUT/pretrain" "tokenizer_dir=$OUT/tokenizer" \
      "$d" "${COMPARE_DATA[@]}"
  done
  for s in $rseeds; do  # the extra GPT runs S, subset seed S: rows of the same backbone (pretrain_seed)
    step "embed_gpt_pretrained_seed$s" --tables compare.which_pretraining --after "tokenizer,pretrain_seed$s" -- \
      $PY1 -m omnijet.embed --config "$CFG/finetune.yaml" --out "$OUT/embed/gpt_pretrained_seed$s" \
      --name "OmniJet-alpha (GPT)" --finetune-grid "$COMPARE_FINETUNE_GRID" --subset-seeds "$s" \
      "pretrain_dir=$OUT/pretrain_seed$s" "tokenizer_dir=$OUT/tokenizer" "$d" "${COMPARE_DATA[@]}"
  done
  step tables --always --tables omnijet.token_quality,omnijet.generation,omnijet.classification,omnijet.classification_sum -- \
    $PY1 -m omnijet.tables --runs "$OUT" --out "$OUT/tables" --profile "$PROFILE"
}
