"""weaver network config: weaver-core's ParticleTransformer (ParT, arXiv:2202.03772) at a size set by options.

Used as `weaver --network-config bench/weaver/part_network.py -o num_layers 3 -o embed_dims "[64,256,64]" ...`
(weaver passes each `-o name value` to get_model / get_loss, the value read with ast.literal_eval).
The defaults are the reduced ParT of the kit's supervised reference: 3 particle-attention layers, embedding
[64, 256, 64], about 0.3M parameters. Every other setting is that of the official ParT network config,
jet-universe/particle_transformer networks/example_ParticleTransformer.py (8 heads, pairwise embedding [64, 64, 64]
without pre-activation, 2 class-attention layers without dropout, no extra fully-connected layers, GELU).
"""
import torch
from weaver.nn.model.ParticleTransformer import ParticleTransformer
from weaver.utils.logger import _logger

REDUCED_PART = dict(num_layers=3, embed_dims=[64, 256, 64])
OFFICIAL_PART = dict(
    pair_input_dim=4,
    use_pre_activation_pair=False,
    embed_dims=[128, 512, 128],
    pair_embed_dims=[64, 64, 64],
    num_heads=8,
    num_layers=8,
    num_cls_layers=2,
    block_params=None,
    cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
    fc_params=[],
    activation="gelu",
    trim=True,
    for_inference=False,
)


class ParTWrapper(torch.nn.Module):
    """weaver feeds the inputs in the data config's order: pf_points, pf_features, pf_vectors, pf_mask."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.mod = ParticleTransformer(**kwargs)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"mod.cls_token"}

    def forward(self, points, features, lorentz_vectors, mask):
        return self.mod(features, v=lorentz_vectors, mask=mask)


def get_model(data_config, **kwargs):
    unknown = set(kwargs) - set(OFFICIAL_PART)
    if unknown:
        raise ValueError(f"bench/weaver/part_network.py: unknown network option(s) {sorted(unknown)}; "
                         f"known: {sorted(OFFICIAL_PART)}")
    cfg = {**OFFICIAL_PART, **REDUCED_PART, **kwargs}
    cfg.update(input_dim=len(data_config.input_dicts["pf_features"]), num_classes=len(data_config.label_value))
    model = ParTWrapper(**cfg)
    # one parseable line for bench/bench_weaver_part.py
    _logger.info("ParT parameters: %d" % sum(p.numel() for p in model.parameters()))
    _logger.info("ParT config: %s" % str(cfg))
    model_info = {
        "input_names": list(data_config.input_names),
        "input_shapes": {k: ((1,) + s[1:]) for k, s in data_config.input_shapes.items()},
        "output_names": ["softmax"],
        "dynamic_axes": {**{k: {0: "N", 2: "n_" + k.split("_")[0]} for k in data_config.input_names},
                         "softmax": {0: "N"}},
    }
    return model, model_info


def get_loss(data_config, **kwargs):
    return torch.nn.CrossEntropyLoss()
