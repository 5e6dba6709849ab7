"""Generalized (on-policy) KD, kd.losses.gkd: the divergence against the formula, sampling, and a
killed gkd run resuming to the uninterrupted weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, live, make_objective, tiny_batch, tiny_t5
from test_resume import ONE_THREAD, _kill_between_checkpoints

from kd.losses.gkd import GKD, after_eos, generalized_jsd, sample
from kd.losses.logit import LogitKD


class Out:  # the part of Seq2SeqLMOutput the loss reads
    def __init__(self, logits):
        self.logits = logits


def _reference_jsd(s, t, beta, temp):
    """JSD(beta)(P || Q) per row, written out from the definition in float64: P teacher, Q student."""
    p = torch.softmax(t.double() / temp, -1)
    q = torch.softmax(s.double() / temp, -1)

    def kl(a, b):
        return (a * (a.log() - b.log())).sum(-1)

    if beta == 0:
        return kl(p, q)
    if beta == 1:
        return kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9, 0.0, 1.0])
@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_divergence_is_the_generalized_jsd(beta, temp):
    g = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(6, 11, generator=g), 3 * torch.randn(6, 11, generator=g)
    got = generalized_jsd(s, t, beta, temp).double()
    assert torch.allclose(got, _reference_jsd(s, t, beta, temp), rtol=1e-5, atol=1e-7)


def test_ends_are_forward_and_reverse_kl():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 9, generator=g), torch.randn(5, 9, generator=g)
    log_p, log_q = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    forward = (log_p.exp() * (log_p - log_q)).sum(-1)
    reverse = (log_q.exp() * (log_q - log_p)).sum(-1)
    assert torch.allclose(generalized_jsd(s, t, 0.0), forward, atol=1e-6)
    assert torch.allclose(generalized_jsd(s, t, 1.0), reverse, atol=1e-6)
    assert not torch.allclose(forward, reverse, atol=1e-3)  # the two ends differ: the check means something


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_zero_for_identical_distributions(beta):
    logits = torch.randn(4, 3, 10)
    labels = torch.ones(4, 3, dtype=torch.long)
    loss = GKD(beta=beta, temperature=2.0, lmbda=0.0, sample_temperature=1.0, max_new_tokens=4)(
        Out(logits), Out(logits.clone()), {"labels": labels})
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_padding_and_positions_after_eos_change_nothing():
    s, t = torch.randn(2, 5, 10), torch.randn(2, 5, 10)
    ids = torch.tensor([[4, 5, 1, 7, 8], [6, 1, 1, 3, 2]])  # EOS (1) at 2 and 1; after it: garbage
    labels = ids.masked_fill(after_eos(ids, 1), -100)
    assert labels.tolist() == [[4, 5, 1, -100, -100], [6, 1, -100, -100, -100]]
    loss = GKD(beta=0.5, temperature=1.0, lmbda=0.0, sample_temperature=1.0, max_new_tokens=4)
    before = loss(Out(s), Out(t), {"labels": labels})
    s2, t2 = s.clone(), t.clone()
    s2[labels == -100] += 100 * torch.randn(int((labels == -100).sum()), 10)
    t2[labels == -100] -= 50
    assert loss(Out(s2), Out(t2), {"labels": labels}).item() == pytest.approx(before.item(), rel=1e-6)


def test_lambda_0_beta_0_is_token_level_logit_kd():
    student, teacher = tiny_t5(seed=0), tiny_t5(seed=1)
    batch = tiny_batch()
    grads = []
    losses = []
    for losses_cfg in ({"gkd": {"lmbda": 0.0, "beta": 0.0, "temperature": 2.0}}, {"logit": {"temperature": 2.0}}):
        student.zero_grad()
        objective = make_objective(losses_cfg, teacher, student, label_weight=0.5)
        loss, parts = objective(student, live(teacher), batch)
        loss.backward()
        losses.append((loss.item(), parts))
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters()]))
    (gkd_total, gkd_parts), (logit_total, logit_parts) = losses
    assert gkd_parts["gkd"] == pytest.approx(logit_parts["logit"], rel=1e-6)
    assert gkd_total == pytest.approx(logit_total, rel=1e-6)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)
    # and against the loss class directly, on the same logits
    s, t = torch.randn(2, 4, 10), torch.randn(2, 4, 10)
    labels = torch.ones(2, 4, dtype=torch.long)
    a = GKD(beta=0.0, temperature=3.0, lmbda=0.0, sample_temperature=1.0, max_new_tokens=4)(Out(s), Out(t), {"labels": labels})
    b = LogitKD(3.0)(Out(s), Out(t), {"labels": labels})
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_samples_carry_no_gradient_and_end_at_eos():
    model = tiny_t5(seed=2).train()
    batch = tiny_batch(batch=16, src=6, pad_tail=0)
    labels = sample(model, batch, seed=5, temperature=3.0, max_new_tokens=20)
    assert model.training  # put back in train mode
    assert labels.dtype == torch.long and not labels.requires_grad
    assert all(p.grad is None for p in model.parameters())
    ended = 0
    for row in labels.tolist():
        if 1 in row:  # EOS: real up to and including it, nothing after
            k = row.index(1)
            assert all(v != -100 for v in row[:k + 1]) and all(v == -100 for v in row[k + 1:])
            ended += 1
        else:
            assert -100 not in row
    assert ended > 0  # some row did stop: the masking was exercised
    again = sample(model, batch, seed=5, temperature=3.0, max_new_tokens=20)
    assert torch.equal(labels, again)  # the seed decides the sample
    rng = torch.get_rng_state()
    sample(model, batch, seed=6, temperature=3.0, max_new_tokens=20)
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG (dropout, data order) is untouched


def test_lambda_1_distills_on_samples_and_the_label_loss_stays_on_the_references():
    student, teacher = tiny_t5(seed=0), tiny_t5(seed=1)
    batch = tiny_batch()
    on_policy = make_objective({"gkd": {"lmbda": 1.0, "max_new_tokens": 6}}, teacher, student)
    kd_batch = on_policy.distill_batch(student, batch)
    assert kd_batch is not batch and not torch.equal(kd_batch["labels"][:, :5], batch["labels"])
    _, parts = on_policy(student, live(teacher), batch)
    reference_ce = student(**batch).loss.item()
    assert parts["ce"] == pytest.approx(reference_ce, rel=1e-6)
    off_policy = make_objective({"gkd": {"lmbda": 0.0}}, teacher, student)
    assert off_policy.distill_batch(student, batch) is batch


def test_sampling_generator_is_part_of_the_state_dict():
    student, teacher = tiny_t5(seed=0), tiny_t5(seed=1)
    batch = tiny_batch()
    torch.manual_seed(0)
    a = make_objective({"gkd": {"lmbda": 0.5, "max_new_tokens": 5}}, teacher, student)
    for _ in range(3):
        a.distill_batch(student, batch)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    b = make_objective({"gkd": {"lmbda": 0.5, "max_new_tokens": 5}}, teacher, student)
    b.load_state_dict(state)
    for _ in range(6):  # the same coin flips and the same samples from here on
        x, y = a.distill_batch(student, batch), b.distill_batch(student, batch)
        assert torch.equal(x["labels"], y["labels"])


# ----------------------------------------------------------------------------- a killed gkd stage

TEACHER = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
           "epochs": 1, "lr": 0.01}
STUDENT = dict(TEACHER, epochs=4)
GKD_RECIPE = {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 0.5,
              "losses": {"gkd": {"lmbda": 0.5, "beta": 0.5, "max_new_tokens": 8}}}


@pytest.fixture(scope="module")
def tiny_teacher(tiny_data, tmp_path_factory):
    from kd.models.modeling import build_model
    from kd.params import ModelParams
    from kd.training.run import save_model_dir
    from kd.data.tokenization import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    out = tmp_path_factory.mktemp("gkd_teacher") / "teacher"
    save_model_dir(build_model(ModelParams(**TEACHER), tokenizer, seed=1, section="teacher"), tokenizer, out)
    return out


def _distill(tmp_path, tiny_data, teacher, run):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"student": STUDENT, "train": {"batch_size": 4, "checkpoint_every": 5},
                                      "kd": {"students": {"g": GKD_RECIPE}}}))
    out = tmp_path / run
    return [sys.executable, "-m", "stages.distill", "--student", "g", "--params", str(params),
            "--teacher", str(teacher), "--tokenizer", str(tiny_data / "tokenizer"),
            "--tokenized", str(tiny_data / "tokenized"), "--out", str(out / "student"),
            "--checkpoints", str(out / "ckpt"), "--live-dir", str(out / "live"), "--log-dir", str(out / "logs")]


def test_killed_gkd_run_resumes_to_the_uninterrupted_weights(tiny_data, tiny_teacher, tmp_path):
    from safetensors.torch import load_file

    full_args, cut_args = _distill(tmp_path, tiny_data, tiny_teacher, "full"), _distill(tmp_path, tiny_data,
                                                                                         tiny_teacher, "cut")
    with open(tmp_path / "full.stderr", "w") as err:
        full = subprocess.Popen(full_args, cwd=tmp_path, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=err)
    cut = subprocess.Popen(cut_args, cwd=tmp_path, env=ONE_THREAD, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    killed_at = _kill_between_checkpoints(cut, tmp_path / "cut", after=7)
    rerun = subprocess.run(cut_args, cwd=tmp_path, env=ONE_THREAD, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert full.wait() == 0, (tmp_path / "full.stderr").read_text()[-2000:]
    assert f"at step {killed_at}" in (tmp_path / "cut" / "logs" / "distill_g.log").read_text()
    wf = load_file(str(tmp_path / "full" / "student" / "model.safetensors"))
    wc = load_file(str(tmp_path / "cut" / "student" / "model.safetensors"))
    assert wf.keys() == wc.keys() and all(torch.equal(wf[k], wc[k]) for k in wf)
    # every step logged its gkd term once (the resumed run dropped the killed one's extra rows)
    gkd_rows = (tmp_path / "full" / "live" / "plots" / "metrics" / "train" / "gkd.tsv").read_text().splitlines()
    assert len(gkd_rows) == 1 + 4 * 6
