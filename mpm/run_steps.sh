# MPM steps for run_all.sh (sourced; see "HOW A METHOD PLUGS IN" there). Order: tokenisers -> pretraining ->
# probes / fine-tuning / CWoLa -> table writer. smoke runs a subset (one tokeniser, two pretraining-table rows,
# MPMv2 regression and SSFM, one mode of the new-domain and CWoLa experiments); paper runs every step. mini spends its
# compute where the papers' claims are (common/results/claims.yaml): MPMv1's default row (with --table
# mpm.v1_pretraining: the five pretraining rows the claims compare), each pretrained with seeds 0, 1, 2 (one value per
# pretraining run), MPMv2's ID + regression task, every downstream study of those with three seeds; SSFM (no claim) is
# smoke / paper only; the other rows are paper-only.

mpm_steps() {
  need_data jetclass jetclass_atlas=QCD,Tbqq btag
  local -a tok=()
  local J="data.root=$JETCLASS" A="data.root=$JETCLASS_ATLAS" full=1 row mode task modes v2tasks
  [[ "$PROFILE" == smoke ]] && full=0

  # --- tokenisers (arXiv:2401.13537, arXiv:2409.12589): trained first, then frozen --------------------------------
  step tokenizer_v1 --after "" -- $PY -m mpm.train_tokenizer --config $CFG/tokenizer_v1.yaml --out "$OUT/tokenizer_v1" "$J"
  # mini's default run probes one row of MPMv1's pretraining table (mpmv1, the backbone of the fine-tuning claims); the
  # other four rows (k-means, no PE, backbone PE, regression) and their four claims run with --table mpm.v1_pretraining:
  # three pretraining runs each are ~70 step-minutes, which the 2-hour default run cannot hold (BENCHMARKS.md,
  # "The default run within 2 hours")
  local v1table=1
  [[ "$PROFILE" == mini && "$TABLE" != mpm.v1_pretraining ]] && v1table=0
  # the same for MPMv1's new-classes study (6-class tokeniser, three 6-class pretrainings, their fine-tunings: ~25
  # step-minutes): at mini scale its claim is underpowered (2 SE 9-10 points against the published 5.6 in the runs of
  # 2026-12-06 and 2026-12-07), so the default run leaves it to --table mpm.v1_new_classes
  local v1nc=1
  [[ "$PROFILE" == mini && "$TABLE" != mpm.v1_new_classes ]] && v1nc=0
  if ((full && v1table)); then
    step tokenizer_v1_kmeans --after "" -- $PY1 -m mpm.train_tokenizer --config $CFG/tokenizer_v1_kmeans.yaml \
      --out "$OUT/tokenizer_v1_kmeans" "$J"
  fi
  if ((full && v1nc)); then
    step tokenizer_v1_6class --after "" -- $PY -m mpm.train_tokenizer --config $CFG/tokenizer_v1_6class.yaml \
      --out "$OUT/tokenizer_v1_6class" "$J"
  fi
  if [[ "$PROFILE" == paper ]]; then  # the MPMv2 token tasks (mini runs the ID + regression task only)
    step tokenizer_v2 --after "" -- $PY -m mpm.train_tokenizer --config $CFG/tokenizer_v2.yaml --out "$OUT/tokenizer_v2" "$J"
    step tokenizer_v2_kmeans --after "" -- $PY1 -m mpm.train_tokenizer --config $CFG/tokenizer_v2_kmeans.yaml \
      --out "$OUT/tokenizer_v2_kmeans" "$J"
  fi

  # --- MPMv1 pretraining: every row of the pretraining table (smoke: two rows) ------------------------------------
  local v1rows="mpmv1 mpmv1_regression"
  ((full)) && v1rows="mpmv1 mpmv1_kmeans mpmv1_vqvae_nope mpmv1_vqvae_backbonepe mpmv1_quantised_vqvae
                      mpmv1_quantised_kmeans mpmv1_regression mpmv1_regression_backbonepe"
  [[ "$PROFILE" == mini ]] && v1rows="mpmv1 mpmv1_kmeans mpmv1_vqvae_nope mpmv1_vqvae_backbonepe mpmv1_regression"
  ((v1table)) || v1rows="mpmv1"
  # mini: the rows of the targets claims (VQ-VAE vs k-means vs regression) and of the positional-encoding claims (no
  # PE, backbone PE) get two more pretraining runs (seeds 1, 2), each probed with one probe seed (the rows' values:
  # one per pretraining run, the mean over its probe seeds; common/results/claims.py unit: pretraining)
  # the pretrainings behind a claim of a pretrained backbone against scratch / No Backbone (mpmv1, mpmv1_6class,
  # mpmv2_regression; claims.yaml `replicate: pretraining`) also run with the seeds S of run_all.sh --pretrain-runs
  # (<run>_seed<S>; smoke and mini 1, 2, paper none by default), each fine-tuned with the one fine-tuning seed S
  local rseeds="$RSEEDS" pseeds="$RSEEDS" s
  local seeded="mpmv1 mpmv1_kmeans mpmv1_regression mpmv1_vqvae_nope mpmv1_vqvae_backbonepe"
  [[ "$PROFILE" == smoke ]] && seeded="mpmv1"
  local after
  for row in $v1rows; do
    case "$row" in
      mpmv1_kmeans) tok=("tokenizer.checkpoint=$OUT/tokenizer_v1_kmeans"); after=tokenizer_v1_kmeans ;;
      mpmv1_quantised_kmeans) tok=("tokenizer.checkpoint=$OUT/tokenizer_v1_kmeans" "tokenizer.input_checkpoint=$OUT/tokenizer_v1")
                              after=tokenizer_v1_kmeans,tokenizer_v1 ;;
      mpmv1_regression|mpmv1_regression_backbonepe) tok=(); after="" ;;
      *) tok=("tokenizer.checkpoint=$OUT/tokenizer_v1"); after=tokenizer_v1 ;;
    esac
    step pretrain_$row --after "$after" -- $PY -m mpm.pretrain --config $CFG/$row.yaml --out "$OUT/pretrain/$row" "$J" "${tok[@]}"
    [[ " $seeded " == *" $row "* ]] || continue
    for s in $pseeds; do
      step pretrain_${row}_seed$s --after "$after" -- $PY -m mpm.pretrain --config $CFG/$row.yaml \
        --out "$OUT/pretrain/${row}_seed$s" "$J" "${tok[@]}" seed=$s
    done
  done
  if ((full && v1nc)); then
    step pretrain_mpmv1_6class --after tokenizer_v1_6class -- $PY -m mpm.pretrain --config $CFG/mpmv1_6class.yaml \
      --out "$OUT/pretrain/mpmv1_6class" "$J" "tokenizer.checkpoint=$OUT/tokenizer_v1_6class"
    for s in $rseeds; do
      step pretrain_mpmv1_6class_seed$s --after tokenizer_v1_6class -- $PY -m mpm.pretrain --config $CFG/mpmv1_6class.yaml \
        --out "$OUT/pretrain/mpmv1_6class_seed$s" "$J" "tokenizer.checkpoint=$OUT/tokenizer_v1_6class" seed=$s
    done
  fi

  # --- MPMv2 pretraining: one run per reconstruction task (+ ID task) ---------------------------------------------
  v2tasks="regression ssfm"  # smoke: the ID + regression task the claims use, and set-to-set flow matching
  # mini: the regression task only; the SSFM pretraining (~38 min of CPU, no claim uses it) pays for the MPMv1
  # pretraining seeds above
  [[ "$PROFILE" == mini ]] && v2tasks="regression"
  [[ "$PROFILE" == paper ]] && v2tasks="regression kmeans vqvae cnf cfm ssfm"
  for task in $v2tasks; do
    case "$task" in
      kmeans) tok=("tokenizer.checkpoint=$OUT/tokenizer_v2_kmeans"); after=tokenizer_v2_kmeans ;;
      vqvae) tok=("tokenizer.checkpoint=$OUT/tokenizer_v2"); after=tokenizer_v2 ;;
      *) tok=(); after="" ;;
    esac
    step pretrain_mpmv2_$task --after "$after" -- $PY -m mpm.pretrain --config $CFG/mpmv2_$task.yaml --out "$OUT/pretrain/mpmv2_$task" \
      "$J" "${tok[@]}"
    [[ $task == regression ]] || continue  # the task of the MPMv2 claims
    for s in $rseeds; do
      step pretrain_mpmv2_${task}_seed$s --after "$after" -- $PY -m mpm.pretrain --config $CFG/mpmv2_$task.yaml \
        --out "$OUT/pretrain/mpmv2_${task}_seed$s" "$J" "${tok[@]}" seed=$s
    done
  done

  # --- MPMv1 downstream ---------------------------------------------------------------------------------------------
  for row in $v1rows; do  # linear probe (frozen backbone) of every pretraining configuration (and pretraining run)
    step probe_$row --tables mpm.v1_pretraining --after pretrain_$row -- $PY -m mpm.finetune --config $CFG/finetune_v1_probe.yaml \
      --out "$OUT/probe/$row" "$J" "pretrained.run=$OUT/pretrain/$row"
    [[ " $seeded " == *" $row "* ]] || continue
    for s in $pseeds; do
      step probe_${row}_seed$s --tables mpm.v1_pretraining --after pretrain_${row}_seed$s -- $PY -m mpm.finetune \
        --config $CFG/finetune_v1_probe.yaml --out "$OUT/probe/${row}_seed$s" "$J" "pretrained.run=$OUT/pretrain/${row}_seed$s" \
        "finetune.seeds=[0]"
    done
  done
  for mode in fixed finetune scratch; do
    step v1_jetclass_$mode --tables mpm.v1_jetclass --after pretrain_mpmv1 -- $PY -m mpm.finetune --config $CFG/finetune_v1.yaml \
      --out "$OUT/v1_jetclass/$mode" "$J" "pretrained.run=$OUT/pretrain/mpmv1" finetune.mode=$mode
  done
  for s in $rseeds; do  # <study>/<mode>_seed<S>: the fine-tuned side of a claim on pretraining run S (mpm/tables.py)
    step v1_jetclass_finetune_seed$s --tables mpm.v1_jetclass --after pretrain_mpmv1_seed$s -- $PY -m mpm.finetune \
      --config $CFG/finetune_v1.yaml --out "$OUT/v1_jetclass/finetune_seed$s" "$J" "pretrained.run=$OUT/pretrain/mpmv1_seed$s" \
      finetune.mode=finetune "finetune.seeds=[$s]"
  done
  # the jet-observables floor of each few-shot table: the same labelled subsets and seeds (python -m common.results.floor)
  step floor_v1_jetclass --tables mpm.v1_jetclass --after "" -- $PY1 -m common.results.floor --table mpm.v1_jetclass \
    --config $CFG/finetune_v1.yaml --out "$OUT/floor/v1_jetclass" --profile $PROFILE "$J"
  step floor_v2_jetclass --tables mpm.v2_jetclass --after "" -- $PY1 -m common.results.floor --table mpm.v2_jetclass \
    --config $CFG/finetune_v2.yaml --out "$OUT/floor/v2_jetclass" --profile $PROFILE "$J"
  modes="finetune"
  ((full)) && modes="fixed finetune scratch"
  if ((full && v1nc)); then
    for mode in $modes; do
      step v1_new_classes_$mode --tables mpm.v1_new_classes --after pretrain_mpmv1_6class -- $PY -m mpm.finetune \
        --config $CFG/finetune_v1_newclasses.yaml --out "$OUT/v1_new_classes/$mode" "$J" \
        "pretrained.run=$OUT/pretrain/mpmv1_6class" finetune.mode=$mode
    done
    for s in $rseeds; do
      step v1_new_classes_finetune_seed$s --tables mpm.v1_new_classes --after pretrain_mpmv1_6class_seed$s -- $PY -m mpm.finetune \
        --config $CFG/finetune_v1_newclasses.yaml --out "$OUT/v1_new_classes/finetune_seed$s" "$J" \
        "pretrained.run=$OUT/pretrain/mpmv1_6class_seed$s" finetune.mode=finetune "finetune.seeds=[$s]"
    done
  fi
  for mode in $modes; do
    step v1_new_domain_$mode --tables mpm.v1_new_domain_auc,mpm.v1_new_domain_rejection --after pretrain_mpmv1 -- $PY -m mpm.finetune \
      --config $CFG/finetune_v1_newdomain.yaml --out "$OUT/v1_new_domain/$mode" "$A" \
      "pretrained.run=$OUT/pretrain/mpmv1" finetune.mode=$mode
  done
  for s in $rseeds; do
    step v1_new_domain_finetune_seed$s --tables mpm.v1_new_domain_auc,mpm.v1_new_domain_rejection --after pretrain_mpmv1_seed$s -- \
      $PY -m mpm.finetune --config $CFG/finetune_v1_newdomain.yaml --out "$OUT/v1_new_domain/finetune_seed$s" "$A" \
      "pretrained.run=$OUT/pretrain/mpmv1_seed$s" finetune.mode=finetune "finetune.seeds=[$s]"
  done
  if ((full)); then  # the same binary task in the pretraining domain (the figure's second panel, [U])
    local seeds1=""  # mini: one seed for this panel, which no claim compares
    [[ "$PROFILE" == mini ]] && seeds1="finetune.seeds=[0]"
    for mode in $modes; do
      step v1_new_domain_jetclass_$mode --tables mpm.v1_new_domain_auc,mpm.v1_new_domain_rejection --after pretrain_mpmv1 -- $PY -m mpm.finetune \
        --config $CFG/finetune_v1_newdomain.yaml --out "$OUT/v1_new_domain_jetclass/$mode" "$J" \
        "pretrained.run=$OUT/pretrain/mpmv1" finetune.mode=$mode $seeds1
    done
  fi
  for mode in $( ((full)) && echo "fixed finetune scratch" || echo fixed ); do
    step v1_cwola_$mode --tables mpm.v1_cwola --after pretrain_mpmv1 -- $PY -m mpm.cwola --config $CFG/cwola_v1.yaml \
      --out "$OUT/v1_cwola/$mode" "$J" "pretrained.run=$OUT/pretrain/mpmv1" finetune.mode=$mode
    if [[ "$PROFILE" == paper ]]; then  # the figure's variant without a learning-rate schedule (no warm-up)
      step v1_cwola_${mode}_nosched --tables mpm.v1_cwola --after pretrain_mpmv1 -- $PY -m mpm.cwola --config $CFG/cwola_v1.yaml \
        --out "$OUT/v1_cwola/${mode}_nosched" "$J" "pretrained.run=$OUT/pretrain/mpmv1" finetune.mode=$mode \
        finetune.schedule.warmup_steps=0
    fi
  done
  if ((full)); then
    for s in $rseeds; do
      step v1_cwola_finetune_seed$s --tables mpm.v1_cwola --after pretrain_mpmv1_seed$s -- $PY -m mpm.cwola --config $CFG/cwola_v1.yaml \
        --out "$OUT/v1_cwola/finetune_seed$s" "$J" "pretrained.run=$OUT/pretrain/mpmv1_seed$s" finetune.mode=finetune "finetune.seeds=[$s]"
    done
  fi

  # --- MPMv2 downstream: fine-tuned and frozen per task, from scratch, no backbone --------------------------------
  for task in $v2tasks; do
    for mode in $( ((full)) && echo "finetune fixed" || echo finetune ); do
      step v2_jetclass_${task}_$mode --tables mpm.v2_jetclass --after pretrain_mpmv2_$task -- $PY -m mpm.finetune --config $CFG/finetune_v2.yaml \
        --out "$OUT/v2_jetclass/${task}_$mode" "$J" "pretrained.run=$OUT/pretrain/mpmv2_$task" finetune.mode=$mode
      [[ $task == regression ]] || continue
      for s in $rseeds; do
        step v2_jetclass_${task}_${mode}_seed$s --tables mpm.v2_jetclass --after pretrain_mpmv2_${task}_seed$s -- $PY -m mpm.finetune \
          --config $CFG/finetune_v2.yaml --out "$OUT/v2_jetclass/${task}_${mode}_seed$s" "$J" \
          "pretrained.run=$OUT/pretrain/mpmv2_${task}_seed$s" finetune.mode=$mode "finetune.seeds=[$s]"
      done
    done
  done
  if ((full)); then
    # "untrained": its lr 1e-3 is a finetune.per_n rule of finetune_v2.yaml (jetssl workflow/full_pipeline.smk)
    step v2_jetclass_scratch --tables mpm.v2_jetclass --after "" -- $PY -m mpm.finetune --config $CFG/finetune_v2.yaml \
      --out "$OUT/v2_jetclass/scratch" "$J" finetune.mode=scratch
    # "No Backbone" of the frozen study: the embedding with 0 transformer layers + the class-attention head, all
    # trained at lr 1e-4 (finetune_v2_nobackbone.yaml)
    step v2_jetclass_nobackbone --tables mpm.v2_jetclass --after "" -- $PY -m mpm.finetune \
      --config $CFG/finetune_v2_nobackbone.yaml --out "$OUT/v2_jetclass/nobackbone" "$J"
    # mini: the supervised ceiling beside the label grid (every labelled jet, ~5 epochs; no claim, 2.5 step-minutes),
    # with --table mpm.v2_jetclass only (the default run's 2-hour budget)
    if [[ "$PROFILE" == mini && "$TABLE" == mpm.v2_jetclass ]]; then
      step v2_jetclass_scratch_all --tables mpm.v2_jetclass --after "" -- $PY -m mpm.finetune \
        --config $CFG/finetune_v2.yaml --out "$OUT/v2_jetclass/scratch_all" "$J" finetune.mode=scratch \
        finetune.n_per_class=null "finetune.seeds=[0]" finetune.steps=1500 finetune.val_every=250
    fi
    local cwtasks="regression"  # mini: one pretrained task against scratch; paper: every task
    [[ "$PROFILE" == paper ]] && cwtasks="$v2tasks"
    for task in $cwtasks; do
      step v2_cwola_${task}_finetune --tables mpm.v2_cwola --after pretrain_mpmv2_$task -- $PY -m mpm.cwola --config $CFG/cwola_v2.yaml \
        --out "$OUT/v2_cwola/${task}_finetune" "$J" "pretrained.run=$OUT/pretrain/mpmv2_$task" finetune.mode=finetune
    done
    step v2_cwola_scratch --tables mpm.v2_cwola --after "" -- $PY -m mpm.cwola --config $CFG/cwola_v2.yaml \
      --out "$OUT/v2_cwola/scratch" "$J" finetune.mode=scratch   # lr 1e-4: the workflow's 1e-3 is for JetClass only
  fi

  # --- MPMv2 out of domain on BTag (arXiv:2409.12589): flavour tagging, track origin, secondary-vertex finding ------
  # Each step writes its table's result file itself (mpm/btag/sweep.py). Scratch and No Backbone scale their inputs
  # with quantiles fitted on the JetClass data, as the pretrained encoders do (jetssl applies the JetClass transform).
  local B="data.root=$BTAG" spec name script conf table btasks="$v2tasks" bmodes="finetune fixed" cmode
  [[ "$PROFILE" == smoke ]] && btasks="regression" && bmodes="finetune"
  for spec in "btag mpm.btag.flavour btag_v2 mpm.v2_btag" "track_origin mpm.btag.track_origin track_origin_v2 mpm.v2_track_origin" \
              "vertexing mpm.btag.vertexing vertexing_v2 mpm.v2_vertexing"; do
    read -r name script conf table <<< "$spec"
    for task in $btasks; do
      for mode in $bmodes; do
        step v2_${name}_${task}_$mode --tables $table --after pretrain_mpmv2_$task -- $PY -m $script \
          --config $CFG/$conf.yaml --out "$OUT/v2_$name/${task}_$mode" "$B" "pretrained.run=$OUT/pretrain/mpmv2_$task" \
          finetune.mode=$mode
        # the claim's mode (track origin: frozen against No Backbone; flavour, vertexing: fine-tuned) on runs S
        [[ $name == track_origin ]] && cmode=fixed || cmode=finetune
        [[ $task == regression && $mode == "$cmode" ]] || continue
        for s in $rseeds; do
          step v2_${name}_${task}_${mode}_seed$s --tables $table --after pretrain_mpmv2_${task}_seed$s -- $PY -m $script \
            --config $CFG/$conf.yaml --out "$OUT/v2_$name/${task}_${mode}_seed$s" "$B" \
            "pretrained.run=$OUT/pretrain/mpmv2_${task}_seed$s" finetune.mode=$mode "finetune.seeds=[$s]"
        done
      done
    done
    step v2_${name}_scratch --tables $table --after "" -- $PY -m $script --config $CFG/$conf.yaml \
      --out "$OUT/v2_$name/scratch" "$B" finetune.mode=scratch "pretrained.overrides=[data.root=$JETCLASS]"
    ((full)) && step v2_${name}_nobackbone --tables $table --after "" -- $PY -m $script --config $CFG/$conf.yaml \
      --out "$OUT/v2_$name/nobackbone" "$B" finetune.mode=scratch "pretrained.overrides=[model.depth=0,data.root=$JETCLASS]" \
      btag.table_mode=frozen btag.table_task=nobackbone
  done

  step floor_v2_btag --tables mpm.v2_btag --after "" -- $PY1 -m common.results.floor --table mpm.v2_btag \
    --config $CFG/btag_v2.yaml --out "$OUT/floor/v2_btag" --profile $PROFILE "$B"

  # --- MPMv2 frozen probes: Table B's final row (regression, k-means) and, paper only, the decoder / mask sweeps ----
  if ((full)); then
    for task in regression $( [[ "$PROFILE" == paper ]] && echo kmeans ); do
      step v2_probe_$task --tables mpm.v2_construction --after pretrain_mpmv2_$task -- $PY -m mpm.finetune --config $CFG/finetune_v2_probe.yaml \
        --out "$OUT/v2_probe/$task" "$J" "pretrained.run=$OUT/pretrain/mpmv2_$task"
    done
  fi
  if [[ "$PROFILE" == paper ]]; then
    local v sweep over
    for v in depth_1 depth_2 depth_3 depth_4 mask_0.1 mask_0.2 mask_0.3 mask_0.4 mask_0.5 mask_0.6 mask_0.7 mask_0.8 mask_0.9; do
      sweep=${v%%_*}; v=${v#*_}
      # Table B setting: 200k steps; depth sweep at D_f 30 %, mask sweep with a 2-layer decoder (arXiv:2409.12589)
      if [[ $sweep == depth ]]; then over="model.decoder.depth=$v model.mask_fraction=0.3"
      else over="model.decoder.depth=2 model.mask_fraction=$v"; fi
      step pretrain_v2_sweep_${sweep}_$v --after tokenizer_v2_kmeans -- $PY -m mpm.pretrain --config $CFG/mpmv2_kmeans.yaml \
        --out "$OUT/pretrain/v2_sweep_${sweep}_$v" "$J" "tokenizer.checkpoint=$OUT/tokenizer_v2_kmeans" train.steps=200000 $over
      step v2_sweep_${sweep}_$v --tables mpm.v2_sweep --after pretrain_v2_sweep_${sweep}_$v -- $PY -m mpm.finetune \
        --config $CFG/finetune_v2_probe.yaml --out "$OUT/v2_sweep/${sweep}_$v" "$J" \
        "pretrained.run=$OUT/pretrain/v2_sweep_${sweep}_$v"
    done
  fi

  # --- "Which pretraining?" (common/results/compare.py): pooled frozen embeddings and fine-tuned runs on one shared set of
  # JetClass jets (run_all.sh COMPARE_DATA: the same overrides in every method's embed step), pretrained and random init
  # smoke, mini: the extra pretraining runs S of a backbone (pretrained only) with subset seed S, rows as one backbone
  local init name eseeds run
  for row in mpmv1 $(for task in $v2tasks; do echo mpmv2_$task; done); do
    [[ $row == mpmv1 ]] && conf=finetune_v1 || conf=finetune_v2
    case "$row" in mpmv1) name="MPMv1 (VQ-VAE tokens)" ;; mpmv2_*) name="MPMv2 (${row#mpmv2_})" ;; esac
    case "$row" in mpmv1) [[ " $seeded " == *" mpmv1 "* ]] && eseeds="$pseeds" || eseeds="" ;; mpmv2_regression) eseeds="$rseeds" ;; *) eseeds="" ;; esac
    for init in pretrained random $(for s in $eseeds; do echo pretrained_seed$s; done); do
      run=$row; [[ $init == *_seed* ]] && run=${row}_seed${init#*_seed}
      step embed_${row}_$init --tables compare.which_pretraining --after pretrain_$run -- $PY1 -m mpm.embed \
        --config $CFG/$conf.yaml --out "$OUT/embed/${row}_$init" --name "$name" --finetune-grid "$COMPARE_FINETUNE_GRID" \
        $( [[ $init == random ]] && echo --random-init ) $( [[ $init == *_seed* ]] && echo --subset-seeds ${init#*_seed} ) \
        "pretrained.run=$OUT/pretrain/$run" "$J" "${COMPARE_DATA[@]}"
    done
  done

  # --- tables (always rewritten from whatever results exist) ------------------------------------------------------
  step tables --always --after "" --tables mpm.v1_pretraining,mpm.v1_jetclass,mpm.v1_new_classes,mpm.v1_new_domain_auc,mpm.v1_new_domain_rejection,mpm.v1_cwola,mpm.v2_jetclass,mpm.v2_cwola,mpm.v2_construction,mpm.v2_sweep \
    -- $PY1 -m mpm.tables --runs "$OUT" --out "$OUT/tables" --profile $PROFILE
}
