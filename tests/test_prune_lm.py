"""``chita-opt prune-lm`` on a tiny Llama checkpoint built here (no download)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from chita_opt.cli import main  # noqa: E402

torch.set_num_threads(1)


def _byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="\u0100")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    cfg = transformers.LlamaConfig(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(root / "model")
    _byte_tokenizer().save_pretrained(root / "model")
    text = root / "calib.txt"
    text.write_text(" ".join(f"token {i % 17} and word {i % 5}." for i in range(400)))
    return root


def _linear_weights(model):
    return {n: m.weight.detach() for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")}


@pytest.mark.parametrize("budget", [["--sparsity", "0.5"], ["--pattern", "2:4"],
                                    ["--sparsity", "0.5", "--gradient-block"]])
def test_prune_lm_writes_a_loadable_sparse_checkpoint(checkpoint, tmp_path, capsys, budget):
    out = tmp_path / "pruned"
    rc = main([
        "prune-lm", str(checkpoint / "model"), "--calibration", str(checkpoint / "calib.txt"),
        *budget, "--output", str(out), "--nsamples", "8", "--seqlen", "32", "--quiet",
    ])
    assert rc == 0
    text = capsys.readouterr().out
    assert "held-out perplexity: before" in text and "after" in text
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    dense = transformers.AutoModelForCausalLM.from_pretrained(checkpoint / "model")
    weights = _linear_weights(model)
    assert len(weights) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    for name, w in weights.items():
        assert not name.endswith("weight_orig")
        zeros = (w == 0).float().mean().item()
        assert zeros == pytest.approx(0.5, abs=1e-6), name
        if budget[0] == "--pattern":
            assert torch.all((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2), name
    # the embeddings and lm_head are untouched
    assert torch.equal(model.lm_head.weight, dense.lm_head.weight)
    assert not any("mask" in k for k in model.state_dict())
    transformers.AutoTokenizer.from_pretrained(out)  # the tokenizer was saved too


def test_prune_lm_gradient_block_changes_the_masks(checkpoint, tmp_path):
    base = ["prune-lm", str(checkpoint / "model"), "--calibration", str(checkpoint / "calib.txt"),
            "--sparsity", "0.5", "--nsamples", "8", "--seqlen", "32", "--quiet"]
    assert main([*base, "--output", str(tmp_path / "plain")]) == 0
    assert main([*base, "--gradient-block", "--output", str(tmp_path / "grad")]) == 0
    plain, grad = (_linear_weights(transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / d, local_files_only=True)) for d in ("plain", "grad"))
    assert any(not torch.equal(plain[n] != 0, grad[n] != 0) for n in plain)


def test_prune_lm_errors(checkpoint, tmp_path, capsys):
    base = ["prune-lm", str(checkpoint / "model"), "--calibration", str(checkpoint / "calib.txt")]
    assert main([*base, "--sparsity", "1.5", "--output", str(tmp_path / "a")]) == 2
    assert "--sparsity: expected a number in [0, 1)" in capsys.readouterr().err
    assert main([*base, "--sparsity", "0.5", "--gradient-weight", "-1",
                 "--output", str(tmp_path / "a")]) == 2
    assert "--gradient-weight: expected a finite non-negative" in capsys.readouterr().err
    assert main(["prune-lm", str(tmp_path), "--calibration", str(checkpoint / "calib.txt"),
                 "--sparsity", "0.5", "--output", str(tmp_path / "b")]) == 2
    assert "MODEL_DIR: expected a save_pretrained directory" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    assert main([*base, "--sparsity", "0.5", "--output", str(busy)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (busy / "x").read_text() == "keep me"
    with pytest.raises(SystemExit):
        main([*base, "--sparsity", "0.5", "--pattern", "2:4", "--output", str(tmp_path / "c")])
