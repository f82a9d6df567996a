"""The fused, chunked output layer + cross-entropy equals the plain ``F.cross_entropy(logits)`` path."""
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from neox_cpt.local.head_loss import head_cross_entropy  # noqa: E402


def _inputs(n=301, h=24, v=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, labels


@pytest.mark.parametrize("chunk_rows", [1, 64, 128, 1000])   # 301 rows: a ragged last chunk, and one chunk
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_and_gradients_match_plain_cross_entropy(chunk_rows, reduction):
    hidden, weight, labels = _inputs()
    plain = F.cross_entropy(hidden @ weight.T, labels, reduction=reduction)
    g_hidden, g_weight = torch.autograd.grad(plain * 3.0, (hidden, weight))   # a non-unit upstream gradient
    fused = head_cross_entropy(hidden, weight, labels, reduction=reduction, chunk_rows=chunk_rows)
    f_hidden, f_weight = torch.autograd.grad(fused * 3.0, (hidden, weight))
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    assert torch.allclose(f_hidden, g_hidden, rtol=1e-10, atol=1e-12)
    assert torch.allclose(f_weight, g_weight, rtol=1e-10, atol=1e-12)


def test_no_grad_path_gives_the_same_loss_and_builds_no_graph():
    hidden, weight, labels = _inputs()
    with torch.no_grad():
        fused = head_cross_entropy(hidden, weight, labels, reduction="sum", chunk_rows=50)
    assert not fused.requires_grad
    assert fused.item() == pytest.approx(F.cross_entropy(hidden @ weight.T, labels, reduction="sum").item(), rel=1e-12)


def test_gradient_reaches_only_the_tensors_that_ask():
    hidden, weight, labels = _inputs()
    frozen = weight.detach()
    (g_hidden,) = torch.autograd.grad(head_cross_entropy(hidden, frozen, labels), (hidden,))
    (expected,) = torch.autograd.grad(F.cross_entropy(hidden @ frozen.T, labels), (hidden,))
    assert torch.allclose(g_hidden, expected, rtol=1e-10, atol=1e-12)


def test_bad_arguments_name_the_problem():
    hidden, weight, labels = _inputs()
    with pytest.raises(ValueError, match="reduction = 'none'"):
        head_cross_entropy(hidden, weight, labels, reduction="none")
    with pytest.raises(ValueError, match=r"labels \[N\]"):
        head_cross_entropy(hidden, weight, labels[:-1])


def test_lm_loss_matches_the_models_own_logits():
    from neox_cpt.local.config import ModelConfig
    from neox_cpt.local.model import build_model, lm_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=32, num_layers=2, num_heads=2), vocab_size=300, seq_length=16)
    tokens = torch.randint(0, 300, (3, 17))
    logits = model(input_ids=tokens[:, :-1]).logits
    plain = F.cross_entropy(logits.reshape(-1, 300), tokens[:, 1:].reshape(-1))
    plain_grads = torch.autograd.grad(plain, list(model.parameters()))
    fused = lm_loss(model, tokens)
    fused_grads = torch.autograd.grad(fused, list(model.parameters()))
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
    for a, b in zip(fused_grads, plain_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
