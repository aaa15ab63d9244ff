"""Part 7's models as cached recipes: the DCGAN, the encoder, the IM1/IM2 autoencoders, C3LT's maps.

Every artifact of the chapter is made by a registered architecture and trainer, so the model
cache (``python -m robust_utils.cache build --set part7``) pre-builds them and the chapter loads
the same recipes:

* ``dcgan`` (architecture) / ``dcgan`` (objective): an ``nn.ModuleDict`` of the generator ``G`` and
  the discriminator ``D`` of the authors' code (:mod:`robust_utils.generative`), trained together
  on all classes (:func:`robust_utils.generative.train_dcgan`);
* ``latent_encoder`` / ``latent_encoder``: ``E`` into ``G``'s latent space. The authors' code has
  no script that trains it; the book's loss (:func:`train_encoder`) is the reconstruction of real
  images through the frozen generator plus the recovery of the codes of generated images,

  .. math:: \\lVert G(E(x)) - x\\rVert_2^2 + \\lambda\\, \\lVert E(G(z)) - z\\rVert_2^2 ,
     \\qquad z \\sim \\mathcal N(0, I);

  one encoder for all classes (the code: one per class pair);
* ``conv_autoencoder`` / ``autoencoder``: the small autoencoders IM1 and IM2 need, one per class
  (``only_class``) and one for all classes (``only_class=-1``);
* ``c3lt_maps`` / ``c3lt``: an ``nn.ModuleDict`` of C3LT's maps ``g`` (query -> target) and ``h``
  (back), trained by :func:`robust_utils.c3lt.train_c3lt` on ``E``'s codes of the two classes'
  training images, with the classifier, ``G``, ``D`` and ``E`` as recipe dependencies.

Taught in Part 7, section "The generator and the encoder".
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from . import c3lt
from ._checks import check_bool, check_class_index, check_images, check_number, check_positive_int, check_seed
from .config import pick_device, progress_bar, seed_everything
from .generative import (LATENT_DIM, ConvAutoencoder, DCGANDiscriminator, DCGANGenerator, LatentEncoder,
                         to_tanh_range, train_autoencoder, train_dcgan)
from .models import register_architecture
from .training import iterate_minibatches, recipe_data, register_trainer

__all__ = ["dcgan", "c3lt_maps", "train_encoder", "encode", "PART7_SETTINGS", "PART7_PAIRS", "PART7_OTHER_PAIR",
           "ABLATIONS", "map_label"]


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------
def dcgan(latent_dim: int = LATENT_DIM, width: int = 64, channels: int = 1) -> nn.ModuleDict:
    """``{"G": DCGANGenerator, "D": DCGANDiscriminator}`` of one width, cached as one artifact.

    Taught in Part 7, section "The generator and the encoder".
    """
    return nn.ModuleDict({"G": DCGANGenerator(latent_dim, width, channels), "D": DCGANDiscriminator(width, channels)})


def c3lt_maps(latent_dim: int = LATENT_DIM) -> nn.ModuleDict:
    """``{"g": LatentMap, "h": LatentMap}``: C3LT's two maps for one class pair.

    Taught in Part 7, section "C3LT".
    """
    return nn.ModuleDict({"g": c3lt.LatentMap(latent_dim), "h": c3lt.LatentMap(latent_dim)})


register_architecture("dcgan", dcgan)
register_architecture("latent_encoder", LatentEncoder)
register_architecture("conv_autoencoder", ConvAutoencoder)
register_architecture("c3lt_maps", c3lt_maps)


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------
def train_encoder(encoder: nn.Module, generator: nn.Module, x: torch.Tensor, *, epochs: int, batch_size: int = 128,
                  lr: float = 1e-3, latent_weight: float = 1.0, device="cpu", seed: int = 0,
                  progress: bool = True) -> dict:
    """Train ``E`` for a frozen ``G``: ``MSE(G(E(x)), x) + latent_weight * MSE(E(G(z)), z)``.

    ``x`` are ``[0, 1]`` images (scaled to ``[-1, 1]`` here); ``z`` are fresh standard normal codes
    each batch. Only the encoder's weights change (the generator stays in eval mode with no
    gradients). Returns per-epoch lists ``recon``, ``latent`` and ``time``.

    Taught in Part 7, section "The generator and the encoder".
    """
    if not isinstance(encoder, nn.Module) or not isinstance(generator, DCGANGenerator):
        raise TypeError("train_encoder needs an encoder (nn.Module) and a DCGANGenerator.")
    x = check_images(x, "x", value_range=(0.0, 1.0), size=(28, 28))
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
    lr = check_number(lr, "lr")
    latent_weight = check_number(latent_weight, "latent_weight", strict=False)
    progress = check_bool(progress, "progress")
    seed = check_seed(seed)
    dev = pick_device(device)
    seed_everything(seed)
    encoder.to(dev).train()
    generator.to(dev)
    x = to_tanh_range(x.to(dev))
    opt = torch.optim.Adam(encoder.parameters(), lr=lr, betas=(0.5, 0.999))
    order = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=dev).manual_seed(seed + 1)
    hist = {"recon": [], "latent": [], "time": []}
    steps = (x.shape[0] + batch_size - 1) // batch_size
    bar = progress_bar(total=epochs * steps, disable=not progress, unit="batch", desc="encoder")
    try:
        with c3lt._frozen(generator):
            for _ in range(epochs):
                t0, rec_sum, lat_sum, n = time.perf_counter(), 0.0, 0.0, 0
                for xb in iterate_minibatches(x, None, batch_size, shuffle=True, generator=order,
                                              drop_last=x.shape[0] % batch_size == 1):
                    z = torch.randn(xb.shape[0], generator.latent_dim, generator=noise, device=dev)
                    with torch.no_grad():
                        xz = generator(z)
                    recon = F.mse_loss(generator(encoder(xb)), xb)
                    latent = F.mse_loss(encoder(xz), z)
                    loss = recon + latent_weight * latent
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    rec_sum += float(recon.detach()) * xb.shape[0]
                    lat_sum += float(latent.detach()) * xb.shape[0]
                    n += xb.shape[0]
                    bar.update(1)
                hist["recon"].append(rec_sum / n)
                hist["latent"].append(lat_sum / n)
                hist["time"].append(time.perf_counter() - t0)
    finally:
        bar.close()
        encoder.eval()
    return hist


def encode(encoder: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``E(x)`` of ``[0, 1]`` images in batches, without gradients: codes ``(N, D)``.

    Taught in Part 7, section "The generator and the encoder".
    """
    x = check_images(x, "x", value_range=(0.0, 1.0), size=(28, 28))
    batch_size = check_positive_int(batch_size, "batch_size")
    with torch.no_grad():
        return torch.cat([encoder(to_tanh_range(x[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)])


# ---------------------------------------------------------------------------------------------
# Trainers
# ---------------------------------------------------------------------------------------------
def _check_beta1(p: dict) -> None:
    check_number(p["beta1"], "beta1", maximum=0.999999, strict=False)


@register_trainer("dcgan", params={"beta1": 0.5}, check=_check_beta1)
def _train_dcgan(model, recipe, *, device, progress=True, deps=None) -> dict:
    """The cache's DCGAN trainer: :func:`robust_utils.generative.train_dcgan` on the recipe's images.

    Taught in Part 7, section "The generator and the encoder".
    """
    d = recipe_data(recipe, device)
    hist = train_dcgan(model["G"], model["D"], d["x_train"], epochs=recipe.epochs, batch_size=recipe.batch_size,
                       lr=recipe.lr, beta1=dict(recipe.objective_params)["beta1"], device=device, seed=recipe.seed,
                       progress=progress)
    return {"train_seconds": round(sum(hist["time"]), 2), "n_train": int(d["x_train"].shape[0]), "history": hist}


def _check_encoder(p: dict) -> None:
    check_number(p["latent_weight"], "latent_weight", strict=False)


@register_trainer("latent_encoder", params={"latent_weight": 1.0}, check=_check_encoder)
def _train_encoder(model, recipe, *, device, progress=True, deps=None) -> dict:
    """The cache's encoder trainer (:func:`train_encoder`; dependency ``gan``).

    Taught in Part 7, section "The generator and the encoder".
    """
    if not deps or "gan" not in deps:
        raise ValueError("an encoder recipe needs depends_on={'gan': <the DCGAN's recipe>}.")
    d = recipe_data(recipe, device)
    hist = train_encoder(model, deps["gan"]["G"], d["x_train"], epochs=recipe.epochs, batch_size=recipe.batch_size,
                         lr=recipe.lr, latent_weight=dict(recipe.objective_params)["latent_weight"], device=device,
                         seed=recipe.seed, progress=progress)
    xt = to_tanh_range(d["x_test"][:1000])
    with torch.no_grad():
        test_recon = float(F.mse_loss(deps["gan"]["G"](model(xt)), xt))
    return {"train_seconds": round(sum(hist["time"]), 2), "n_train": int(d["x_train"].shape[0]),
            "test_recon_mse": test_recon, "history": hist}


def _check_ae(p: dict) -> None:
    if p["only_class"] != -1:  # -1: all classes
        check_class_index(p["only_class"], "only_class (or -1 for all classes)", 10)


@register_trainer("autoencoder", params={"only_class": -1}, check=_check_ae)
def _train_ae(model, recipe, *, device, progress=True, deps=None) -> dict:
    """The cache's autoencoder trainer: MSE on the recipe's ``[0, 1]`` images of ``only_class``
    (all classes for -1), :func:`robust_utils.generative.train_autoencoder`.

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """
    d = recipe_data(recipe, device)
    c = dict(recipe.objective_params)["only_class"]
    x, xt = d["x_train"], d["x_test"]
    if c >= 0:
        x, xt = x[d["y_train"] == c], xt[d["y_test"] == c]
    t0 = time.perf_counter()
    hist = train_autoencoder(model, x, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                             device=device, seed=recipe.seed)
    with torch.no_grad():
        test_mse = float(F.mse_loss(model(xt), xt))
    return {"train_seconds": round(time.perf_counter() - t0, 2), "n_train": int(x.shape[0]),
            "train_mse": hist[-1], "test_mse": test_mse}


def _check_c3lt(p: dict) -> None:
    for k in ("query", "target"):
        check_class_index(p[k], k, 10)
    if p["query"] == p["target"]:
        raise ValueError("query and target must be different classes.")
    check_positive_int(p["n"], "n")
    check_bool(p["cycle"], "cycle")
    check_bool(p["adversarial"], "adversarial")


@register_trainer("c3lt", params={"query": 4, "target": 6, "n": 1, "cycle": True, "adversarial": True},
                  check=_check_c3lt)
def _train_maps(model, recipe, *, device, progress=True, deps=None) -> dict:
    """The cache's C3LT trainer: ``g`` and ``h`` for ``query <-> target`` on ``E``'s codes of the
    recipe's training images of the two classes (dependencies ``classifier``, ``gan``, ``encoder``).
    ``cycle=False`` / ``adversarial=False`` drop those losses (the ablations); the rate halves
    every 25 epochs (the code's step decay) whatever the recipe's ``schedule``.

    Taught in Part 7, section "C3LT".
    """
    missing = {"classifier", "gan", "encoder"} - set(deps or {})
    if missing:
        raise ValueError(f"a c3lt recipe needs the dependencies classifier, gan and encoder; missing {sorted(missing)}.")
    p = dict(recipe.objective_params)
    d = recipe_data(recipe, device)
    zq = encode(deps["encoder"], d["x_train"][d["y_train"] == p["query"]])
    zt = encode(deps["encoder"], d["x_train"][d["y_train"] == p["target"]])
    weights = {**c3lt.LOSS_WEIGHTS, **({} if p["cycle"] else {"cyc": 0.0}), **({} if p["adversarial"] else {"adv": 0.0})}
    g, h, hist = c3lt.train_c3lt(deps["classifier"], deps["gan"]["G"], deps["gan"]["D"], zq, zt, p["query"], p["target"],
                                 epochs=recipe.epochs, n=p["n"], batch_size=recipe.batch_size, lr=recipe.lr,
                                 device=device, seed=recipe.seed, progress=progress, weights=weights)
    model["g"].load_state_dict(g.state_dict())
    model["h"].load_state_dict(h.state_dict())
    return {"train_seconds": round(sum(hist["time"]), 2), "n_query": int(zq.shape[0]), "n_target": int(zt.shape[0]),
            "history": hist}


# ---------------------------------------------------------------------------------------------
# The chapter's recipe set
# ---------------------------------------------------------------------------------------------
#: The paper's Fashion-MNIST pairs (query, CF class): (coat, shirt), (t-shirt/top, pullover),
#: (sneaker, ankle boot); each map pair is trained in both directions.
PART7_PAIRS = ((4, 6), (0, 2), (7, 9))
#: The non-similar pair of the paper's Fig. 4: (ankle boot, pullover).
PART7_OTHER_PAIR = (9, 2)
#: Ablations (on the first pair): name -> objective parameters changed from the default.
ABLATIONS = {"no cycle loss": {"cycle": False}, "no adversarial loss": {"adversarial": False}, "n = 3 steps": {"n": 3}}
#: Per profile: the generator's width (the code's 64; the laptop's 32 is about 5x cheaper on a CPU),
#: training images of every artifact, and epochs of the GAN, the encoder, the autoencoders and the maps
#: (the code: 100 GAN epochs, 201 map epochs, all 60,000 images).
PART7_SETTINGS = {
    "smoke": {"width": 16, "n_train": 2048, "gan_epochs": 1, "enc_epochs": 1, "ae_epochs": 1, "map_epochs": 1},
    "laptop": {"width": 32, "n_train": 30000, "gan_epochs": 6, "enc_epochs": 3, "ae_epochs": 4, "map_epochs": 10},
    "full": {"width": 64, "n_train": None, "gan_epochs": 100, "enc_epochs": 20, "ae_epochs": 20, "map_epochs": 200},
}


def map_label(query: int, target: int, ablation: str | None = None) -> str:
    """The recipe-set label of the maps of ``query <-> target`` (and an ablation's name).

    Taught in Part 7, section "C3LT".
    """
    return f"C3LT {query}<->{target}" + (f" ({ablation})" if ablation else "")


def _part7(p, seed: int) -> dict:
    from .recipes import Recipe, default_recipe

    s = PART7_SETTINGS[p.name]
    common = dict(profile=p.name, seed=seed, n_train=s["n_train"])
    out = {"classifier": default_recipe("c3lt_cnn", profile=p, seed=seed),
           # the FID/KID feature network: another Fashion-MNIST CNN than the one explained
           "feature network": default_recipe("strided_cnn", profile=p, seed=seed + 1)}
    gan = Recipe("dcgan", arch_kwargs={"width": s["width"]}, objective="dcgan", epochs=s["gan_epochs"],
                 batch_size=64, lr=2e-4, schedule="constant", **common)
    enc = Recipe("latent_encoder", arch_kwargs={"width": s["width"]}, objective="latent_encoder",
                 epochs=s["enc_epochs"], batch_size=128, lr=1e-3, schedule="constant", depends_on={"gan": gan}, **common)
    out["gan"], out["encoder"] = gan, enc
    for c in (-1, *range(10)):
        out["AE all classes" if c < 0 else f"AE class {c}"] = Recipe(
            "conv_autoencoder", objective="autoencoder", objective_params={"only_class": c}, epochs=s["ae_epochs"],
            batch_size=128, lr=1e-3, schedule="constant", **common)
    deps = {"classifier": out["classifier"], "gan": gan, "encoder": enc}

    def maps(q, t, **params):
        return Recipe("c3lt_maps", objective="c3lt", objective_params={"query": q, "target": t, **params},
                      epochs=s["map_epochs"], batch_size=128, lr=1e-3, schedule="step", depends_on=deps, **common)

    for q, t in (*PART7_PAIRS, PART7_OTHER_PAIR):
        out[map_label(q, t)] = maps(q, t)
    q, t = PART7_PAIRS[0]
    for name, params in ABLATIONS.items():
        out[map_label(q, t, name)] = maps(q, t, **params)
    return out


def _register_part7() -> None:
    from .recipes import register_recipe_set

    register_recipe_set("part7")(_part7)


_register_part7()
