"""Random draws that honour an optional :class:`torch.Generator` on any device."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(
    shape: tuple[int, ...] | torch.Size, like: torch.Tensor, generator: Generators
) -> torch.Tensor:
    """Standard normal draws with the dtype and device of ``like``.

    Args:
        shape: Shape of the draw.
        like: Tensor whose dtype and device the result takes.
        generator: Optional generator, or a sequence of generators, one per row (first
            dimension) of the draw, so that row k depends only on generator k (per-image
            reproducibility whatever the batch size). The draw is made on the generator's
            device (a CPU generator with CUDA data draws on the CPU and copies), so a given
            generator state gives the same numbers whatever device the data lives on.

    Returns:
        Tensor of standard normal draws.
    """
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    if not isinstance(generator, torch.Generator):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a draw of {shape[0]} rows")
        rows = [torch.randn(tuple(shape[1:]), generator=g, dtype=like.dtype) for g in generator]
        return torch.stack(rows).to(like.device)
    z = torch.randn(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return z.to(like.device)


def randint(
    high: int, size: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform integers in [0, high) on ``device``, drawn with ``generator`` if given."""
    if generator is None:
        return torch.randint(0, high, size, device=device)
    return torch.randint(0, high, size, generator=generator, device=generator.device).to(device)


def rand(
    shape: tuple[int, ...] | torch.Size, like: torch.Tensor, generator: Generators
) -> torch.Tensor:
    """Uniform [0, 1) draws with the dtype (float32 for integer data) and device of ``like``.

    Args:
        shape: Shape of the draw.
        like: Tensor whose device (and floating dtype) the result takes.
        generator: As for :func:`randn`.

    Returns:
        Tensor of uniform draws.
    """
    dtype = like.dtype if like.is_floating_point() else torch.float32
    if generator is None:
        return torch.rand(shape, dtype=dtype, device=like.device)
    if not isinstance(generator, torch.Generator):
        rows = [torch.rand(tuple(shape[1:]), generator=g, dtype=dtype) for g in generator]
        return torch.stack(rows).to(like.device)
    return torch.rand(shape, generator=generator, dtype=dtype, device=generator.device).to(
        like.device
    )


def image_generator(seed: int, index: int, stream: int = 0) -> torch.Generator:
    """Image ``index``'s own CPU generator under ``seed``: ncsn's one per-image seeding.

    Image k of seed S gets the same draws whatever the number of images and the batch size.
    ``stream`` separates independent uses of the same image index: 0 sampling and
    dequantisation, 1 likelihood probes, 2 held-out DSM noise.
    """
    # wrapped to 64 bits (torch's seed range), which changes nothing for seeds below ~1.8e13
    seed64 = (stream * 2**40 + int(seed) * 1_000_003 + int(index)) % 2**64
    return torch.Generator().manual_seed(seed64)
