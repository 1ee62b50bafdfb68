"""Stage 3, conditioning: prompts → text conditioning (A1111's comments, emphasis, prompt editing, ``AND``), and
the "TI hashes" of the embeddings used."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from ..checkpoint import file_sha256
from ..clip import encode_prompts, encode_prompts_sd2, encode_prompts_sdxl, tokenize_prompt
from ..clip.schedule import get_prompt_schedule, split_and
from ..networks import strip_networks
from ..samplers import total_steps
from ..unet import sdxl_adm_vector
from .job import Job

# A1111's options `sdxl_crop_top` / `sdxl_crop_left` (default 0): the crop coordinates of SDXL's size conditioning.
SDXL_CROP_TOP_LEFT = (0, 0)


@dataclasses.dataclass
class ScheduledConditioning:
    """Text conditioning that changes during sampling (prompt editing, alternation, ``AND``).

    cond_schedules: one ``[(end_at_step, [1, L, C]), ...]`` per ``AND`` sub-prompt; weights: their CFG weights;
    uncond_schedule: the negative prompt's schedule.
    """

    cond_schedules: list[list[tuple[int, torch.Tensor]]]
    weights: list[float]
    uncond_schedule: list[tuple[int, torch.Tensor]]


_COMMENT_LINE = re.compile(r"(?:^|\n)#[^\n]*(?:\n|$)")
_COMMENT_TAIL = re.compile(r"#[^\n]*(?:\n|$)")


def strip_comments(text: str) -> str:
    """A1111 prompt comments: a line starting with '#' is removed, then any other '#…' to the end of its line;
    each removal leaves one newline (what A1111 encodes and writes into the infotext)."""
    return _COMMENT_TAIL.sub("\n", _COMMENT_LINE.sub("\n", text))



class ConditioningMixin:
    """The `Pipeline`'s text-encoding methods (public: `encode_prompt`, `encode_prompts`).

    SDXL refiner pipelines condition on an aesthetic score: `aesthetic_score` for prompts and
    `negative_aesthetic_score` for negative prompts (A1111's options `sdxl_refiner_high_aesthetic_score` 6.0 and
    `sdxl_refiner_low_aesthetic_score` 2.5); set them on the pipeline to change them.
    """

    aesthetic_score: float = 6.0
    negative_aesthetic_score: float = 2.5

    def encode_prompt(self, text: str, clip_skip: int = 1, **kwargs: Any):
        """A1111 conditioning for one prompt: [1, 77·k, C] (weights, mean restore, 75-token chunks, embeddings), or
        SDXL's {"crossattn": [1, 77·k, 2048], "vector": [1, 2816]}."""
        return self.encode_prompts([text], clip_skip, **kwargs)

    def encode_prompts(self, texts: list[str], clip_skip: int = 1, *, negative: bool = False,
                       size: tuple[int, int] | None = None, emphasis: str = "Original"):
        """Conditioning for a batch of prompts. SDXL only: `negative` marks a negative prompt (all-empty texts then
        give zeros, as sgm's force_zero_embeddings in A1111), `size` is the processing (width, height) of the size
        conditioning (A1111's default 1024 x 1024 when not given). `emphasis`: A1111's emphasis mode.
        SDXL refiner: {"crossattn": [1, 77·k, 1280], "vector": [1, 2560]} (bigG alone, the aesthetic score by
        `negative`, `inpaintlab.refiner.conditioning`)."""
        family = self.config.family
        with torch.inference_mode():
            if family == "sd1":
                return encode_prompts(self.text_encoder, self.tokenizer, texts, clip_skip=clip_skip,
                                      embeddings=self.embeddings, emphasis=emphasis).float()
            if family == "sd2":
                return encode_prompts_sd2(self.text_encoder, self.tokenizer, texts, clip_skip=clip_skip,
                                          embeddings=self.embeddings, emphasis=emphasis).float()
            if family == "sdxl_refiner":
                from ..refiner.conditioning import encode_prompts_refiner, refiner_adm_vector

                context, pooled = encode_prompts_refiner(self.text_encoder, texts, self.embeddings,
                                                         tokenizer=self.tokenizer, negative=negative, emphasis=emphasis)
                width, height = size or (1024, 1024)
                score = self.negative_aesthetic_score if negative else self.aesthetic_score
                vector = refiner_adm_vector(pooled.float(), (height, width), SDXL_CROP_TOP_LEFT, score)
                return {"crossattn": context.float(), "vector": vector.to(context.device)}
            context, pooled = encode_prompts_sdxl(self.text_encoder, self.text_encoder_2, self.tokenizer, texts,
                                                  clip_skip=clip_skip, embeddings=self.embeddings,
                                                  tokenizer_g=self.tokenizer_2, negative=negative,
                                                  emphasis=emphasis)
            width, height = size or (1024, 1024)
            vector = sdxl_adm_vector(pooled.float(), (height, width), SDXL_CROP_TOP_LEFT, (height, width))
            return {"crossattn": context.float(), "vector": vector.to(context.device)}

    def _used_embeddings(self, texts: list[str]) -> list[str]:
        """Embedding names one encoder call over `texts` uses, in A1111's order (chunk by chunk, then by text)."""
        if not self.embeddings:
            return []
        embeddings = self.embeddings
        if self.config.family == "sdxl":  # {"clip_l", "clip_g"} pairs: CLIP-L's vectors place them the same way
            embeddings = {name: pair["clip_l"] for name, pair in embeddings.items()}
        per_text = [tokenize_prompt(self.tokenizer, text, embeddings) for text in dict.fromkeys(texts)]
        names: dict[str, None] = {}
        for i in range(max(len(chunks) for chunks in per_text)):
            for chunks in per_text:
                for fix in chunks[i].fixes if i < len(chunks) else ():
                    names[fix.name] = None
        return list(names)

    def _ti_hashes(self, cond_texts: list[str], uncond_texts: list[str]) -> str | None:
        """A1111's "TI hashes": `name: sha256[:12]` of each embedding file used, the prompt's first, then the negative
        prompt's (A1111 encodes the negative prompt first and prepends each later call's hashes); None if unused."""
        entries = []
        for texts in (cond_texts, uncond_texts):
            for name in self._used_embeddings(texts):
                path = self.embedding_files.get(name)
                if path is None:
                    continue  # given as a tensor, not loaded from a file: nothing to hash
                if name not in self._embedding_hashes:
                    self._embedding_hashes[name] = file_sha256(path)[:12]
                entries.append(f"{name.replace(':', '').replace(',', '')}: {self._embedding_hashes[name]}")
        return ", ".join(entries) or None

    def _conditioning(self, prompt: str, negative_prompt: str, batch: int, clip_skip: int, steps: int,
                      size: tuple[int, int] | None = None, emphasis: str = "Original"):
        """(cond, uncond) tensors for fixed prompts, or (ScheduledConditioning, None) when a prompt uses prompt
        editing, alternation, ``AND`` or a ``:weight`` suffix (A1111 step 12). `size`: the processing (width, height),
        which SDXL's size conditioning takes in every mode."""
        # Network tags leave the positive prompt only; in the negative prompt they stay text (A1111).
        prompt, negative_prompt = strip_networks(strip_comments(prompt)), strip_comments(negative_prompt)
        # Schedules span the user's step count (doubled for second-order samplers, whose schedules A1111 indexes by
        # denoiser call), not the truncated img2img run.
        parts = split_and(prompt)
        cond_schedules = [get_prompt_schedule(text, steps) for text, _ in parts]
        uncond_schedule = get_prompt_schedule(negative_prompt, steps)
        if (parts == [(prompt, 1.0)] and cond_schedules == [[(steps, prompt)]]
                and uncond_schedule == [(steps, negative_prompt)]):
            cond = self.encode_prompts([prompt] * batch, clip_skip, size=size, emphasis=emphasis)
            uncond = self.encode_prompts([negative_prompt] * batch, clip_skip, negative=True, size=size,
                                         emphasis=emphasis)
            return cond, uncond

        # Like A1111, each distinct (sub-)prompt is encoded once, all its schedule texts in one batch (emphasis
        # "Original" restores the mean over that whole batch, and shorter texts get empty chunks).
        cache: dict[tuple[str, bool], list[tuple[int, Any]]] = {}

        def encoded(text: str, schedule: list[tuple[int, str]], negative: bool = False) -> list[tuple[int, Any]]:
            if (text, negative) not in cache:
                z = self.encode_prompts([variant for _, variant in schedule], clip_skip, negative=negative, size=size,
                                        emphasis=emphasis)
                rows = ({k: v[i : i + 1] for k, v in z.items()} if isinstance(z, dict) else z[i : i + 1]
                        for i in range(len(schedule)))
                cache[text, negative] = [(end_at_step, row) for (end_at_step, _), row in zip(schedule, rows)]
            return cache[text, negative]

        conds = [encoded(text, schedule) for (text, _), schedule in zip(parts, cond_schedules)]
        uncond = encoded(negative_prompt, uncond_schedule, negative=True)
        return ScheduledConditioning(conds, [weight for _, weight in parts], uncond), None


def conditioning(job: Job, pipe: Any = None) -> None:
    """job.cond / job.uncond for the job's prompts over the sampler's step count (A1111 step 12); `pipe`: the model
    that encodes them (default the job's; a refiner recomputes them with its own)."""
    s, pipe = job.settings, pipe or job.pipe
    emphasis = s.get("emphasis", "Original")
    # The emphasis keyword only when it is not the default, so callers that wrap `_conditioning` keep working.
    extra = {} if emphasis == "Original" else {"emphasis": emphasis}
    job.cond, job.uncond = pipe._conditioning(s["prompt"], s["negative_prompt"], s["batch_size"], s["clip_skip"],
                                                  total_steps(job.sampler, s["steps"]), (job.width, job.height),
                                                  **extra)
    if (s.get("pad_cond_uncond") or s.get("pad_cond_uncond_v0")) and job.uncond is not None:
        pad_job_conds(job, s["clip_skip"], emphasis, pipe)
    # A1111 records a non-default emphasis mode only when some prompt text could use it.
    if emphasis != "Original" and any(c in s["prompt"] + s["negative_prompt"] for c in "(["):
        job.extra["Emphasis"] = emphasis


def ti_hashes(job: Job, prompt: str, negative_prompt: str) -> str | None:
    """A1111's "TI hashes" for the job's (comment-stripped) prompts, or None without embeddings."""
    steps = job.settings["steps"]
    cond_texts = [variant for text, _ in split_and(prompt) for _, variant in get_prompt_schedule(text, steps)]
    uncond_texts = [variant for _, variant in get_prompt_schedule(negative_prompt, steps)]
    return job.pipe._ti_hashes(cond_texts, uncond_texts)


def pad_job_conds(job: Job, clip_skip: int, emphasis: str, pipe: Any = None) -> None:
    """A1111's pad conds (v1: whole copies of the empty prompt's encoding; v0, which takes precedence: the uncond's
    last token vector, or truncation) when cond and uncond have different token lengths, so they run in one batch;
    records `Pad conds` / `Pad conds v0`. Fixed prompts only (scheduled ones keep their separate calls)."""
    from ..guidance.cfg_rules import pad_conds

    v0 = bool(job.settings.get("pad_cond_uncond_v0"))
    cond, uncond = job.cond, job.uncond
    ctx_c = cond["crossattn"] if isinstance(cond, dict) else cond
    ctx_u = uncond["crossattn"] if isinstance(uncond, dict) else uncond
    if ctx_c.shape[1] == ctx_u.shape[1]:
        return
    empty = None
    if not v0:
        e = (pipe or job.pipe).encode_prompts([""], clip_skip, size=(job.width, job.height), emphasis=emphasis)
        empty = e["crossattn"] if isinstance(e, dict) else e
    new_c, new_u = pad_conds(ctx_c, ctx_u, empty, v0=v0)
    job.cond = {**cond, "crossattn": new_c} if isinstance(cond, dict) else new_c
    job.uncond = {**uncond, "crossattn": new_u} if isinstance(uncond, dict) else new_u
    job.extra["Pad conds v0" if v0 else "Pad conds"] = True
