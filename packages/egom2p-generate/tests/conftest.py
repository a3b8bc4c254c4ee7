"""Shared fixtures: a tiny random model and the original's generation parity fixture."""

from pathlib import Path

import pytest
import torch
from egom2p.core.testing import one_torch_thread, s3_server  # noqa: F401  (importing a fixture registers it)
from egom2p.model import EgoM2P, EgoM2PConfig
from generate_helpers import saved_checkpoint, tiny_egom2p

TINY_MODALITIES = {
    "tok_cam": {"vocab_size": 64, "length": 8},
    "tok_depth": {"vocab_size": 256, "grid": [2, 4, 4]},
    "tok_gaze": {"vocab_size": 64, "length": 8},
    "tok_rgb": {"vocab_size": 256, "grid": [2, 4, 4]},
}
PARITY_FILE = Path(__file__).parent / "fixtures" / "tiny_generate.pt"  # committed; missing = failure


@pytest.fixture(scope="session")
def tiny_model():
    model = tiny_egom2p(TINY_MODALITIES, seed=0)
    with torch.no_grad():  # sharper token tables, so that inputs visibly change the outputs
        for name in model.modality_names:
            model.encoder_embeddings[name].token_emb.weight.mul_(25)
            model.decoder_embeddings[name].token_emb.weight.mul_(10)
    return model


@pytest.fixture(scope="session")
def checkpoint(tiny_model, tmp_path_factory):
    """`tiny_model` saved as our checkpoint directory, for the command-line tests."""
    return saved_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def parity():
    assert PARITY_FILE.is_file(), f"parity fixture {PARITY_FILE} is missing from the repository"
    return torch.load(PARITY_FILE, weights_only=True)


@pytest.fixture(scope="session")
def parity_model(parity):
    """Builds the fixture's tiny original model with our loader: `parity_model(sharp=False)`."""

    def build(sharp: bool) -> EgoM2P:
        state = dict(parity["state_dict"])
        if sharp:
            state.update(parity["sharp_state_dict_overrides"])
        return EgoM2P.from_pretrained(state, config=_parity_config(parity["config"])).eval()

    return build


def _parity_config(fixture_config) -> EgoM2PConfig:
    """Our config for the fixture's tiny original model (parity README: width 96, 2+2 blocks, 4 heads)."""
    modalities = {}
    for name in fixture_config["modalities"]:
        shape = fixture_config["token_shapes"][name]
        layout = {"grid": list(shape)} if len(shape) == 3 else {"length": shape[0]}
        modalities[name] = {"vocab_size": fixture_config["vocab_sizes"][name], **layout}
    return EgoM2PConfig(
        dim=fixture_config["dim"], encoder_depth=fixture_config["encoder_depth"],
        decoder_depth=fixture_config["decoder_depth"], num_heads=fixture_config["num_heads"],
        mlp_ratio=fixture_config["mlp_ratio"], modalities=modalities,
        attn_backend="sdpa",  # 10x faster than "reference" on 5120-token inputs; same tokens
    )
