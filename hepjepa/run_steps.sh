# HEP-JEPA steps for run_all.sh (sourced; see "HOW A METHOD PLUGS IN" there). Order: pretraining -> linear probe vs
# random init -> JetClass few-shot sweep -> top tagging -> quark-gluon -> Figures 2 and 3 + monitors -> shortcut ablation
# (inputs, target normalisation, position; 3 seeds; linear probe + few-shot) -> paper ablations (shortened pretraining
# + frozen probe, one switch each) -> table writer. Every profile runs every step; smoke and mini shrink
# sizes through their configs.

hepjepa_steps() {
  need_data jetclass toptagging qg
  local J="data.root=$JETCLASS" P="sweep.pretrained=$OUT/pretrain/checkpoint.pt" abl
  local ABL_TABLES=hepjepa.ablation_masking,hepjepa.ablation_num_targets,hepjepa.ablation_physics_bias
  ABL_TABLES=$ABL_TABLES,hepjepa.ablation_registers,hepjepa.ablation_augmentations,hepjepa.ablation_patching

  step pretrain -- $PY -m hepjepa.pretrain --config $CFG/pretrain.yaml --out "$OUT/pretrain" "$J"
  # mini and smoke: the fine-tuned-vs-scratch claims are replicated over pretraining runs (claims.yaml `replicate:
  # pretraining`): seeds 1, 2 in pretrain_seed<S>, each fine-tuned (mode finetune) with the one fine-tuning seed S into
  # ft_jetclass_seed<S> (hepjepa/tables.py); scratch stays in ft_jetclass. paper: one pretraining run
  local s rseeds="$RSEEDS"  # run_all.sh --pretrain-runs
  for s in $rseeds; do
    # --after "": beside the seed-0 pretraining, not behind it (the default would chain the three runs, one core idle)
    step pretrain_seed$s --after "" -- $PY -m hepjepa.pretrain --config $CFG/pretrain.yaml --out "$OUT/pretrain_seed$s" \
      "$J" seed=$s
    step ft_jetclass_seed$s --tables hepjepa.jetclass_fewshot --after pretrain_seed$s -- \
      $PY -m hepjepa.finetune --config $CFG/finetune_jetclass.yaml --out "$OUT/ft_jetclass_seed$s" "$J" \
      "sweep.pretrained=$OUT/pretrain_seed$s/checkpoint.pt" "sweep.modes=[finetune]" "finetune.seeds=[$s]"
  done
  step probe --tables hepjepa.linear_probe --after pretrain -- \
    $PY1 -m hepjepa.probe --config $CFG/finetune_jetclass.yaml --out "$OUT/probe" "$J" "$P"
  step ft_jetclass --tables hepjepa.jetclass_fewshot --after pretrain -- \
    $PY -m hepjepa.finetune --config $CFG/finetune_jetclass.yaml --out "$OUT/ft_jetclass" "$J" "$P"
  step ft_top --tables hepjepa.top_tagging --after pretrain -- \
    $PY -m hepjepa.finetune --config $CFG/finetune_top.yaml --out "$OUT/ft_top" "data.root=$TOPTAGGING" "$P"
  step ft_qg --tables hepjepa.quark_gluon --after pretrain -- \
    $PY -m hepjepa.finetune --config $CFG/finetune_qg.yaml --out "$OUT/ft_qg" "data.root=$QG" "$P"
  # the jet-observables floor of the three tables: the same labelled subsets and seeds (python -m common.results.floor)
  step floor_jetclass --tables hepjepa.jetclass_fewshot --after "" -- $PY1 -m common.results.floor \
    --table hepjepa.jetclass_fewshot --config $CFG/finetune_jetclass.yaml --out "$OUT/floor/jetclass" --profile $PROFILE "$J"
  step floor_top --tables hepjepa.top_tagging --after "" -- $PY1 -m common.results.floor --table hepjepa.top_tagging \
    --config $CFG/finetune_top.yaml --out "$OUT/floor/top" --profile $PROFILE "data.root=$TOPTAGGING"
  step floor_qg --tables hepjepa.quark_gluon --after "" -- $PY1 -m common.results.floor --table hepjepa.quark_gluon \
    --config $CFG/finetune_qg.yaml --out "$OUT/floor/qg" --profile $PROFILE "data.root=$QG"
  step figures --after pretrain,ft_jetclass -- \
    $PY1 -m hepjepa.figures --config $CFG/finetune_jetclass.yaml --out "$OUT/figures" \
    --finetune-dir "$OUT/ft_jetclass" "$J" "$P"

  local init  # "Which pretraining?" (common/results/compare.py): the same compare set as every method (run_all.sh COMPARE_DATA)
  for init in pretrained random; do
    step embed_$init --tables compare.which_pretraining --after pretrain -- $PY1 -m hepjepa.embed \
      --config $CFG/finetune_jetclass.yaml --out "$OUT/embed/jepa_$init" --name HEP-JEPA --finetune-grid "$COMPARE_FINETUNE_GRID" \
      $( [[ $init == random ]] && echo --random-init ) "$J" "$P" "${COMPARE_DATA[@]}"
  done
  for s in $rseeds; do  # the extra pretraining runs S, subset seed S: rows of the same backbone (pretrain_seed)
    step embed_pretrained_seed$s --tables compare.which_pretraining --after pretrain_seed$s -- $PY1 -m hepjepa.embed \
      --config $CFG/finetune_jetclass.yaml --out "$OUT/embed/jepa_pretrained_seed$s" --name HEP-JEPA \
      --finetune-grid "$COMPARE_FINETUNE_GRID" --subset-seeds $s "$J" "sweep.pretrained=$OUT/pretrain_seed$s/checkpoint.pt" \
      "${COMPARE_DATA[@]}"
  done

  # shortcut ablation (ours): reference arm + one switch each, three seeds; per seed a pretraining, the linear probe
  # and fine-tuning at the smallest label fraction, all with that seed
  # paper: the reference arm's pretraining is the main one (shortcut_base.yaml changes only downstream keys), so its
  # seed-0 run reuses $OUT/pretrain (train.reuse: hepjepa.pretrain links it after checking the configs, or trains);
  # smoke and mini shorten the arms, which then never equal the main pretraining. Mini runs it only when asked
  # (--table hepjepa.ablation_shortcut): it decides no claim and its 76 step-minutes would put the default run over
  # 2 hours (BENCHMARKS.md "Cost that fits the work"); at half the steps the arms no longer separate
  local arm d pre_after reuse arms="base inputs target_norm position"
  [[ "$PROFILE" == mini && "$TABLE" != hepjepa.ablation_shortcut ]] && arms=""
  for arm in $arms; do
    for s in 0 1 2; do
      d="$OUT/shortcut/$arm/seed$s"
      pre_after="" reuse=""
      if [[ "$PROFILE" == paper && $arm == base && $s == 0 ]]; then pre_after=pretrain reuse="train.reuse=$OUT/pretrain"; fi
      step shortcut_${arm}_s${s}_pretrain --tables hepjepa.ablation_shortcut --after "$pre_after" -- \
        $PY -m hepjepa.pretrain --config $CFG/shortcut_$arm.yaml --out "$d/pretrain" "$J" seed=$s ${reuse:+"$reuse"}
      step shortcut_${arm}_s${s}_probe --tables hepjepa.ablation_shortcut --after shortcut_${arm}_s${s}_pretrain -- \
        $PY1 -m hepjepa.probe --config $CFG/shortcut_$arm.yaml --out "$d/probe" "$J" seed=$s "probe.seeds=[$s]" \
        "sweep.pretrained=$d/pretrain/checkpoint.pt"
      step shortcut_${arm}_s${s}_fewshot --tables hepjepa.ablation_shortcut --after shortcut_${arm}_s${s}_pretrain -- \
        $PY -m hepjepa.finetune --config $CFG/shortcut_$arm.yaml --out "$d/fewshot" "$J" seed=$s "finetune.seeds=[$s]" \
        "sweep.pretrained=$d/pretrain/checkpoint.pt"
    done
  done

  # ablations (project page): base = the reference run, every other config changes one switch of it. Not in mini:
  # one seed each and no claim (smoke runs them tiny, paper at size); their CPU goes to the shortcut ablation above
  [[ "$PROFILE" == mini ]] || for abl in base random_masking targets1 targets2 no_physics_bias no_registers no_augment patching_fixed \
             patching_2g; do
    step ablation_${abl}_pretrain --tables $ABL_TABLES --after "" -- \
      $PY -m hepjepa.pretrain --config $CFG/ablation_$abl.yaml --out "$OUT/ablation/$abl/pretrain" "$J"
    step ablation_${abl}_probe --tables $ABL_TABLES --after ablation_${abl}_pretrain -- \
      $PY -m hepjepa.finetune --config $CFG/ablation_$abl.yaml --out "$OUT/ablation/$abl/probe" "$J" \
      "sweep.pretrained=$OUT/ablation/$abl/pretrain/checkpoint.pt"
  done

  step tables --always --tables hepjepa.jetclass_fewshot,hepjepa.convergence,hepjepa.top_tagging,hepjepa.quark_gluon,hepjepa.linear_probe,hepjepa.ablation_shortcut,$ABL_TABLES -- \
    $PY1 -m hepjepa.tables --runs "$OUT" --out "$OUT/tables" --profile $PROFILE
}
