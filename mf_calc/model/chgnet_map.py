"""The one two-way table between chgnet's ``CHGNet`` and MF-CHGNet: constructor arguments ↔ ``MFConfig`` fields,
and state-dict names. MF-CHGNet keeps one readout per fidelity copy (``readouts.{copy}.``) where chgnet has
``mlp.``, and its composition weights as ``composition.weight``; every other weight has the same name."""

from __future__ import annotations

#: MFConfig field -> chgnet ``CHGNet`` keyword argument
CONFIG_FIELDS = {
    "atom_fea_dim": "atom_fea_dim", "bond_fea_dim": "bond_fea_dim", "angle_fea_dim": "angle_fea_dim",
    "num_radial": "num_radial", "num_angular": "num_angular", "n_conv": "n_conv",
    "atom_conv_hidden_dim": "atom_conv_hidden_dim", "bond_conv_hidden_dim": "bond_conv_hidden_dim",
    "angle_layer_hidden_dim": "angle_layer_hidden_dim", "mlp_hidden_dims": "mlp_hidden_dims",
    "cutoff": "atom_graph_cutoff", "bond_cutoff": "bond_graph_cutoff", "cutoff_coeff": "cutoff_coeff",
    "learnable_rbf": "learnable_rbf", "gmlp_norm": "gMLP_norm", "readout_norm": "readout_norm",
    "activation": "non_linearity", "mlp_out_bias": "mlp_out_bias",
}

#: chgnet arguments of the one architecture variant MF-CHGNet implements
FIXED_CHGNET_ARGS = {"composition_model": "MPtrj", "update_bond": True, "update_angle": True, "conv_dropout": 0,
                     "read_out": "ave", "mlp_dropout": 0, "mlp_first": True, "is_intensive": True,
                     "graph_converter_algorithm": "fast"}

#: chgnet state-dict prefix -> MF-CHGNet prefix ({copy}: the fidelity copy of the readout)
STATE_PREFIXES = (("mlp.", "readouts.{copy}."), ("composition_model.fc.weight", "composition.weight"))


def config_fields(chgnet_args: dict) -> dict:
    """MFConfig keyword arguments of a chgnet model's ``model_args`` (ValueError for another variant)."""
    for key in ("mlp_first", "update_bond", "update_angle"):
        if not chgnet_args.get(key, True):
            raise ValueError(f"a CHGNet with {key}=False is an architecture variant MF-CHGNet does not implement")
    fields = {mf: chgnet_args[ch] for mf, ch in CONFIG_FIELDS.items() if ch in chgnet_args}
    fields.setdefault("mlp_out_bias", False)
    return fields | {"mlp_hidden_dims": tuple(fields["mlp_hidden_dims"]), "cutoff": float(fields["cutoff"]),
                     "bond_cutoff": float(fields["bond_cutoff"])}


def chgnet_args(config) -> dict:
    """chgnet ``CHGNet`` keyword arguments of an MFConfig's architecture."""
    args = {ch: getattr(config, mf) for mf, ch in CONFIG_FIELDS.items()}
    return args | {"mlp_hidden_dims": list(config.mlp_hidden_dims)} | FIXED_CHGNET_ARGS


def mf_state_key(key: str, copy: int) -> str:
    """The MF-CHGNet name of chgnet weight ``key`` in fidelity copy ``copy`` (readouts) of the model."""
    for chgnet_prefix, mf_prefix in STATE_PREFIXES:
        if key.startswith(chgnet_prefix):
            return mf_prefix.format(copy=copy) + key[len(chgnet_prefix):]
    return key


def chgnet_state_key(key: str) -> str:
    """The chgnet name of the weight ``key`` of a single-fidelity MF-CHGNet (copy 0)."""
    for chgnet_prefix, mf_prefix in STATE_PREFIXES:
        if key.startswith(mf_prefix.format(copy=0)):
            return chgnet_prefix + key[len(mf_prefix.format(copy=0)):]
    return key
