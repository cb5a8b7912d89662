"""Fast greedy and beam-search captioning for BLIP that returns exactly what ``model.generate`` returns.

Hugging Face ``generate`` re-runs work that a captioner does not need: it expands the image embeddings
to every beam and recomputes their cross-attention keys/values per beam, grows the self-attention cache
by concatenation, applies ``no_repeat_ngram_size`` per step over the whole batch and reorders both caches
on every beam step. Here the vision encoder runs once, each image's cross-attention keys/values are
computed once and shared by its beams (beams are the query rows of one matrix product), the self-attention
keys/values live in a preallocated buffer where each beam writes its own slot and nothing is ever copied
(a beam reorder only rewrites a small table of which slot holds each position of each beam's history;
attention reads all slots of an image in one product and keeps the right column), and the beam bookkeeping
works on ``(batch, beams)`` tensors. The selection rules (top-2K candidates, length penalty ``len ** lp``,
the early-stopping heuristic and its ``"never"`` variant, which finished hypotheses are kept, the output
length and fill token) follow ``GenerationMixin._beam_search`` of transformers 5.x, so the tokens are
identical in float32 (``tests/test_fast_decode.py`` checks greedy and beam 3/4/5/10).

The decoder step over shared caches is :class:`medcap_utils.decoding.blip_stepper.BlipStepper`; this module holds
the searches and :func:`fast_generate`. Used by :func:`medcap_utils.decoding.blip.blip_captions` (the ``"fast"``
engine of :func:`medcap_utils.decoding.caption.caption`) and so by notebooks 02-04; timed against ``generate``
by ``python -m medcap_utils.runner.bench decode``.

``compile=True`` switches the per-step function to fixed shapes (the whole key buffer with a mask, the
position as a tensor) and wraps it in ``torch.compile`` so a GPU session can run it under CUDA graphs
(``compile_mode="reduce-overhead"``); on CPU it is only used when asked for.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from medcap_utils.decoding.blip_stepper import BlipStepper
from medcap_utils.decoding.config import UnsupportedDecoding

__all__ = ["BeamSearch", "BlipStepper", "GreedySearch", "UnsupportedGeneration", "ban_repeated_ngrams",
           "fast_generate", "resolve_generation_config", "run_search"]

#: Generation options whose non-neutral values change the search; this decoder implements none of them, so a
#: non-neutral value is refused (sampling-only options do not matter without sampling). The options a
#: DecodingConfig can set are checked earlier and by name (``DecodingConfig.check_engine("fast")``).
NEUTRAL_OPTIONS = {
    "do_sample": (False, None), "num_beam_groups": (1, None), "diversity_penalty": (0.0, None),
    "repetition_penalty": (1.0, None), "encoder_repetition_penalty": (1.0, None), "min_length": (0, None),
    "min_new_tokens": (0, None), "bad_words_ids": (None,), "force_words_ids": (None,), "constraints": (None,),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,), "sequence_bias": (None,), "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (False, None), "remove_invalid_values": (False, None), "num_return_sequences": (1, None),
    "guidance_scale": (None, 1.0), "encoder_no_repeat_ngram_size": (0, None), "max_time": (None,),
    "stop_strings": (None,), "output_scores": (False, None), "output_logits": (False, None),
    "return_dict_in_generate": (False, None), "output_attentions": (False, None),
    "output_hidden_states": (False, None), "watermarking_config": (None,), "prompt_lookup_num_tokens": (None,),
    "dola_layers": (None,), "penalty_alpha": (None,), "token_healing": (False, None), "low_memory": (False, None),
}
NEG = -1.0e9  # HF's "impossible" score for beams


class UnsupportedGeneration(UnsupportedDecoding):
    """Raised for generation options this decoder does not implement (ask for ``engine="generate"``)."""


def resolve_generation_config(model, **kwargs):
    """The generation config HF ``generate`` would use for BLIP's text decoder with ``kwargs`` (the model's
    own config, transformers' global defaults, then ``kwargs``), through HF's own preparation step.

    Raises :class:`UnsupportedGeneration` for sampling, other logits processors or extra outputs.
    """
    gen, leftover = model.text_decoder._prepare_generation_config(None, **kwargs)
    if leftover:
        raise UnsupportedGeneration(f"not generation options: {sorted(leftover)}")
    changed = sorted(k for k, ok in NEUTRAL_OPTIONS.items() if getattr(gen, k, None) not in ok)
    if changed:
        raise UnsupportedGeneration(f"fast decoding does not implement {changed}")
    return gen


def ban_repeated_ngrams(prev: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """``scores`` with -inf on every token that would repeat an n-gram of ``prev`` (rows, length).

    Same rule as HF's ``NoRepeatNGramLogitsProcessor``: windows whose first n-1 tokens equal the last
    n-1 tokens ban their last token; nothing is banned before the sequence holds n tokens.
    """
    length = prev.shape[1]
    if not n or length < n:
        return scores
    windows = prev.unfold(1, n, 1)  # (rows, length - n + 1, n)
    hit = (windows[..., :-1] == prev[:, length - n + 1:].unsqueeze(1)).all(dim=-1)
    vocab = scores.shape[-1]
    target = torch.where(hit, windows[..., -1].clamp(max=vocab), vocab)  # misses go to a spare column
    banned = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, target, True)
    return scores.masked_fill(banned[:, :vocab], float("-inf"))


def _prompt(model, batch: int, device) -> torch.Tensor:
    return torch.full((batch, 1), model.config.text_config.bos_token_id, dtype=torch.long, device=device)


def _keep(active: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> None:
    """``old <- new`` while the search is active; after it has stopped the state stays frozen."""
    old.copy_(torch.where(active, new, old))


class GreedySearch:
    """Greedy search as HF's ``_sample`` without sampling: finished rows get ``pad``; stops when all rows end.

    The state lives in preallocated tensors and ``step(cur)`` changes it in place with no host sync, so a
    step can be replayed as a CUDA graph; once every row has ended (``active`` false) steps change nothing
    that is returned, so running a few steps past HF's stopping point gives the same output.
    """

    def __init__(self, stepper: BlipStepper, rows: int, max_length: int, eos: int, pad: int, ngram: int, device):
        self.stepper, self.max_length, self.eos, self.pad, self.ngram = stepper, max_length, eos, pad, ngram
        self.seq = torch.full((rows, max_length), pad, dtype=torch.long, device=device)
        self.unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        self.length = torch.zeros((), dtype=torch.long, device=device)
        self.active = torch.ones((), dtype=torch.bool, device=device)

    def reset(self, prompt: torch.Tensor) -> None:
        self.start = prompt.shape[1]
        self.seq.fill_(self.pad)
        self.seq[:, :self.start] = prompt
        self.unfinished.fill_(True)
        self.length.fill_(self.start)
        self.active.fill_(True)

    def step(self, cur: int) -> None:
        scores = ban_repeated_ngrams(self.seq[:, :cur], self.stepper.step(self.seq[:, cur - 1], cur - 1), self.ngram)
        nxt = torch.where(self.unfinished, scores.argmax(dim=-1), self.pad)
        self.seq[:, cur] = nxt  # after the stop nxt is all pad, beyond the returned length
        self.unfinished &= nxt != self.eos
        _keep(self.active, torch.full_like(self.length, cur + 1), self.length)
        self.active &= self.unfinished.any()

    def result(self) -> torch.Tensor:
        return self.seq[:, : int(self.length)]


class BeamSearch:
    """Beam search with HF ``_beam_search`` semantics (see the module docstring); state as in :class:`GreedySearch`."""

    def __init__(self, stepper: BlipStepper, batch: int, beams: int, max_length: int, eos: int, pad: int, ngram: int,
                 length_penalty: float, early_stopping, device):
        self.stepper, self.batch, self.beams, self.max_length = stepper, batch, beams, max_length
        self.eos, self.ngram, self.lp, self.early = eos, ngram, length_penalty, early_stopping
        self.fill = pad if pad else eos  # HF fills with `pad or eos`, so a pad id of 0 means the end token
        self.keep = 2 * beams  # one end token: HF keeps max(2, 1 + n_eos) * beams candidates
        shape = (batch, beams)
        self.running = torch.full((*shape, max_length), self.fill, dtype=torch.long, device=device)
        self.done_seq = torch.empty_like(self.running)
        self.run_scores = torch.zeros(shape, device=device)
        self.done_scores = torch.zeros(shape, device=device)
        self.done_flag = torch.zeros(shape, dtype=torch.bool, device=device)
        self.done_len = torch.zeros(shape, dtype=torch.long, device=device)  # generated tokens of each kept hypothesis
        self.improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
        self.active = torch.ones((), dtype=torch.bool, device=device)
        self.top_half = torch.arange(self.keep, device=device) < beams

    def reset(self, prompt: torch.Tensor) -> None:
        self.start = prompt.shape[1]
        self.stepper.reset()
        self.running.fill_(self.fill)
        self.running[:, :, :self.start] = prompt[:, None]
        self.done_seq.copy_(self.running)
        self.run_scores.fill_(0.0)
        self.run_scores[:, 1:] = NEG  # only the first beam expands at step one
        self.done_scores.fill_(NEG)
        self.done_flag.fill_(False)
        self.done_len.fill_(0)
        self.improvable.fill_(True)
        self.active.fill_(True)

    def step(self, cur: int) -> None:
        batch, beams, start, lp, active = self.batch, self.beams, self.start, self.lp, self.active
        flat = self.running.view(batch * beams, self.max_length)
        logp = F.log_softmax(self.stepper.step(flat[:, cur - 1], cur - 1), dim=-1)
        logp = ban_repeated_ngrams(flat[:, :cur], logp, self.ngram)
        vocab = logp.shape[-1]
        total = (logp.view(batch, beams, vocab) + self.run_scores[:, :, None]).view(batch, beams * vocab)
        cand_scores, cand_idx = torch.topk(total, self.keep)
        parent, token = cand_idx // vocab, cand_idx % vocab
        cand = torch.take_along_dim(self.running, parent[..., None], dim=1)
        cand[:, :, cur] = token
        ends = (token == self.eos) | (cur + 1 >= self.max_length)
        # running beams for the next step: the best candidates that did not end
        live_scores = cand_scores + ends.to(torch.float32) * NEG
        pick = torch.topk(live_scores, beams)[1]
        running = torch.take_along_dim(cand, pick[..., None], dim=1)
        run_scores = torch.take_along_dim(live_scores, pick, dim=1)
        parents = torch.take_along_dim(parent, pick, dim=1)
        # finished hypotheses: only candidates among the top `beams` count, scored with the length penalty
        new_done = ends & self.top_half
        normed = cand_scores / ((cur + 1 - start) ** lp)  # a Python divisor, as HF (CUDA: times its reciprocal)
        normed = normed + (self.done_flag.all(dim=-1, keepdim=True) & (self.early is True)).to(torch.float32) * NEG
        normed = normed + (~self.improvable).to(torch.float32) * NEG
        normed = normed + (~new_done) * NEG
        merged_scores = torch.cat((self.done_scores, normed), dim=1)
        sel = torch.topk(merged_scores, beams)[1]
        done_seq = torch.take_along_dim(torch.cat((self.done_seq, cand), dim=1), sel[..., None], dim=1)
        done_scores = torch.take_along_dim(merged_scores, sel, dim=1)
        done_flag = torch.take_along_dim(torch.cat((self.done_flag, new_done), dim=1), sel, dim=1)
        new_len = torch.full_like(token, cur + 1 - start)
        done_len = torch.take_along_dim(torch.cat((self.done_len, new_len), dim=1), sel, dim=1)
        self.stepper.reorder(torch.where(active, parents, self.stepper.own), upto=cur)
        # can a running beam still beat the worst kept hypothesis? (HF's heuristic; sticky per image)
        hyp_len = (self.max_length if self.early == "never" and lp > 0.0 else cur + 1) - start
        best_running = run_scores[:, :1] / (hyp_len ** lp)
        worst_done = torch.where(done_flag, done_scores.min(dim=1, keepdim=True)[0], NEG)
        improvable = self.improvable & (best_running > worst_done).any(dim=-1, keepdim=True)
        go_on = improvable.any() & ~(done_flag.all() & (self.early is True)) & ~ends.all()
        for new, old in ((running, self.running), (run_scores, self.run_scores), (done_seq, self.done_seq),
                         (done_scores, self.done_scores), (done_flag, self.done_flag), (done_len, self.done_len),
                         (improvable, self.improvable)):
            _keep(active, new, old)
        self.active &= go_on

    def result(self) -> torch.Tensor:
        best = self.done_seq[:, 0]
        return best[:, : self.start + int(self.done_len[:, 0].max())]


def run_search(search, start: int, max_length: int, graphs: "StepGraphs | None" = None, check_every: int = 1):
    """Steps ``start .. max_length - 1`` (eagerly, or replaying one CUDA graph per step), reading the stop
    flag every ``check_every`` steps (each read is a host sync; HF's loop reads it every step)."""
    for i, cur in enumerate(range(start, max_length)):
        if graphs is None:
            search.step(cur)
        else:
            graphs.run(cur, search.step)
        if (i + 1) % check_every == 0 and not bool(search.active):
            break
    return search.result()


class StepGraphs:
    """One CUDA graph per decoding step, captured the first time a step runs and replayed afterwards.

    All graphs share one memory pool (they replay in capture order); everything a step hands to the
    next lives in tensors allocated outside the graphs (the search state, the stepper's caches).
    """

    def __init__(self, stream):
        self.graphs, self.pool, self.stream = {}, torch.cuda.graph_pool_handle(), stream

    def run(self, cur: int, step) -> None:
        graph = self.graphs.get(cur)
        if graph is None:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                step(cur)
            self.graphs[cur] = graph
        graph.replay()


class _GraphedDecoder:
    """Stepper, search state and step graphs kept on the model between calls of the same shape (GPU only)."""

    def __init__(self, model, image_embeds, beams, max_length, gen, eos, pad, ngram):
        self.stream = torch.cuda.Stream()
        self.stepper = BlipStepper(model, image_embeds, beams, max_length)
        batch, dev = image_embeds.shape[0], image_embeds.device
        self.search = GreedySearch(self.stepper, batch, max_length, eos, pad, ngram, dev) if beams == 1 else \
            BeamSearch(self.stepper, batch, beams, max_length, eos, pad, ngram, gen.length_penalty,
                       gen.early_stopping, dev)
        self.graphs, self.calls = StepGraphs(self.stream), 0

    def __call__(self, image_embeds, prompt, max_length: int):
        self.stepper.load_images(image_embeds)
        self.search.reset(prompt)
        self.calls += 1
        if self.calls == 1:  # the first call runs eagerly on the capture stream: lazy initialisation, no capture
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out = run_search(self.search, prompt.shape[1], max_length).clone()
            torch.cuda.current_stream().wait_stream(self.stream)
            return out
        return run_search(self.search, prompt.shape[1], max_length, self.graphs, check_every=4).clone()


def _graph_key(model, pixel_values, beams, max_length, gen, ngram, eos, pad):
    params = (model.text_decoder.cls.predictions.decoder.weight,
              model.text_decoder.bert.embeddings.word_embeddings.weight)
    return (pixel_values.shape[0], pixel_values.dtype, pixel_values.device, beams, max_length, gen.length_penalty,
            str(gen.early_stopping), ngram, eos, pad, tuple((p.data_ptr(), p.dtype) for p in params))


@torch.no_grad()
def fast_generate(model, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, static: bool = False,
                  compile: bool = False, compile_mode: str | None = None, cuda_graphs: bool | None = None,
                  check_every: int = 1, **generate_kwargs) -> torch.LongTensor:
    """Drop-in for ``BlipForConditionalGeneration.generate(pixel_values=..., **generate_kwargs)`` (no prompt).

    ``cuda_graphs`` (default: on when the model is on a GPU and nothing is compiled) keeps the decoder state
    on the model and replays each step as a CUDA graph from the second call of a batch shape on (the
    weights are read at replay time, so training in between is seen; moving or casting the model makes new
    graphs). ``check_every``: steps between reads of the stop flag when not replaying graphs (tests use it
    to show that steps past HF's stopping point change nothing). ``static`` runs the fixed-shape step (whole key buffer,
    masked); ``compile`` also wraps it in
    ``torch.compile(mode=compile_mode)``. Raises :class:`UnsupportedGeneration` for options it does not implement.
    """
    gen = resolve_generation_config(model, **generate_kwargs)
    tc = model.config.text_config
    eos, pad = tc.sep_token_id, tc.pad_token_id  # BLIP's generate passes sep as the end token
    prompt = _prompt(model, pixel_values.shape[0], pixel_values.device)
    max_length = gen.max_new_tokens + prompt.shape[1] if gen.max_new_tokens is not None else gen.max_length
    beams = gen.num_beams or 1
    ngram = gen.no_repeat_ngram_size or 0
    image_embeds = model.vision_model(pixel_values=pixel_values,
                                      interpolate_pos_encoding=interpolate_pos_encoding).last_hidden_state
    if cuda_graphs is None:
        cuda_graphs = pixel_values.is_cuda and not (static or compile)
    if cuda_graphs:
        key = _graph_key(model, pixel_values, beams, max_length, gen, ngram, eos, pad)
        cached = getattr(model, "_medcap_step_graphs", None)
        if cached is None or cached[0] != key:  # one shape kept per model: a new shape frees the old graphs
            model._medcap_step_graphs = None
            cached = (key, _GraphedDecoder(model, image_embeds, beams, max_length, gen, eos, pad, ngram))
            model._medcap_step_graphs = cached
        return cached[1](image_embeds, prompt, max_length)
    stepper = BlipStepper(model, image_embeds, beams, max_length, static, compile, compile_mode)
    if beams == 1:
        search = GreedySearch(stepper, prompt.shape[0], max_length, eos, pad, ngram, prompt.device)
    else:
        search = BeamSearch(stepper, prompt.shape[0], beams, max_length, eos, pad, ngram, gen.length_penalty,
                            gen.early_stopping, prompt.device)
    search.reset(prompt)
    return run_search(search, prompt.shape[1], max_length, check_every=check_every)
