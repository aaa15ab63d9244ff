"""Writes notebooks/08_conclusions.ipynb (then run tools/sync_notebooks.py on it)."""
from nbgen import cells, code, md, write


md("""**[Open this chapter in Colab](x)**""")
cells[-1].metadata["tags"] = ["colab-badge"]
md(r"""
# Conclusions

The MIPR 2024 tutorial {cite}`alregib2024mipr` ends with a single thread through its parts: at
inference a trained network holds more information than its prediction, and gradients are the way
to read it. The gradient of a loss computed for a class the network did not predict measures how
much the network would have to change to explain the input otherwise: with respect to the
weights it is the Fisher-information view behind the anomaly detection of Part 1 and the trust
scores of Part 3; with respect to the activations it gives the contrastive explanations of Part 2
and the uncertainty in explanations of Part 4. Parts 5 to 7 approach the same question from training: robust training makes small
input changes matter less (Part 5), makes adversarial changes readable as explanations (Part 6),
and counterfactuals make the smallest meaningful change explicit (Part 7).

This page is executed like the chapters. It collects every chapter's claims from the run that
built this book, ties the tutorial's key takeaways to the claims that test them, says what did and
did not reproduce, and runs the first of the tutorial's future directions, test-time
augmentation, on Fashion-MNIST.

**Learning objectives.** After this page you can

1. read the book's reproduction scoreboard and trace any verdict back to the section that
   computed it;
2. say which of the tutorial's takeaways about gradients this book's numbers support, and where
   the support is thin;
3. explain the recurring reasons a claim did not reproduce here (scale, data set, missing
   artifacts, a network's geometry);
4. apply test-time augmentation to a trained classifier, pool its views, split the resulting
   uncertainty into the views' own entropy and their disagreement, and judge which augmentations
   are safe for a data set.
""")
code('PROFILE = "auto"  # smoke (CI, seconds) | laptop (CPU, minutes) | full (one GPU) | auto\n'
     'DEVICE = "auto"   # auto | cpu | cuda\nSEED = 0', tags=["parameters"])
code("# setup", tags=["setup", "hide-input"])
code(r'''
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from robust_utils import (cache, claims, corruptions, data, metrics, novel, recipes, scoreboard, training, tta,
                          uncertainty)
from robust_utils.narrate import compare, count, fmt, say
from robust_utils.tables import show_table

T0 = time.time()
SMOKE = profile.name == "smoke"
COL_W = 7.5  # the book's column, in inches at 100 dpi
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8})
# Where the chapters' claims are: the runner and the tests set RNI_CLAIMS_DIR; run alone, this
# folder (a chapter run from here saves its claims here too).
CLAIMS_DIR = Path(os.environ.get(claims.CLAIMS_DIR_ENV) or ".")
tables = [t for t in scoreboard.collect_claims(CLAIMS_DIR) if len(t) and t.chapter[:2].isdigit()]


def part(chapter):
    """'04_intervenability' -> 'Part 4'."""
    return f"Part {int(chapter[:2])}"
''', tags=["hide-input"])
md(r"""
## 1. Reproduction scoreboard

Every chapter ends with a claims table: a claim of its source (or a check of this book), the
source's number, ours, how our protocol differs, and a verdict that a rule written *before* the
run computes from the numbers. The scoreboard gathers them. Verdicts count for the profile they ran
under: under `smoke` every model trains for seconds and the verdicts only show that the code runs;
under `laptop` the models are small and briefly trained, so a claim that needs paper-scale
training can fail for that reason alone (the chapter then says so).
""")
code(r'''
VERDICT_COLOURS = {"reproduced": "#2e7d32", "partly": "#e0a000", "not reproduced": "#c62828", "not comparable": "#9e9e9e"}
if tables:
    counts = pd.DataFrame({t.chapter: t.counts() for t in tables}).T
    total = counts.sum()
    profiles = sorted({t.profile or "unknown" for t in tables})
    say(f"This build ran {count(len(tables), 'chapter')} with claims, under the {', '.join(profiles)} "
        f"profile{'s' if len(profiles) > 1 else ''}: of {count(int(total.sum()), 'claim')}, "
        f"{int(total['reproduced'])} reproduced, {int(total['partly'])} partly, {int(total['not reproduced'])} did not "
        f"and {int(total['not comparable'])} could not be compared."
        + (" These are smoke numbers: they show that every chapter runs, not whether its claims hold."
           if profiles == ["smoke"] else ""))
    fig, ax = plt.subplots(figsize=(COL_W, 0.35 * len(counts) + 0.9), constrained_layout=True)
    left = np.zeros(len(counts))
    labels = [part(c) for c in counts.index]
    for v, colour in VERDICT_COLOURS.items():
        ax.barh(labels, counts[v], left=left, color=colour, label=v)
        left += counts[v].to_numpy()
    ax.invert_yaxis()
    ax.set(xlabel="claims", title="Verdicts per chapter")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    plt.show()
else:
    say("No chapter's claims were found in this run's claims folder, so the scoreboard is empty: run the "
        "chapters first (`make book` runs them all, this page last).")
''', tags=["hide-input"])
code(r'''
display(Markdown(scoreboard.scoreboard_markdown(CLAIMS_DIR, link_prefix="", collapse_details=True)))
''', tags=["hide-input"])
md(r"""
## 2. Key takeaways: the role of gradients

The tutorial's closing slide, "Key Takeaways: Role of Gradients", says that robustness under
distributional shift in domains, environments and adversaries is a challenge for neural
networks, and that gradients at inference provide a holistic answer: they traverse a trained and
unknown manifold (approximating Fisher information on the projection), can be manipulated by
contrast classes, give implicit knowledge about all classes from a single data point, highlight
the features of predictions, counterfactuals and contrasts, give directional information for
anomaly detection, and quantify uncertainty for out-of-distribution, corruption and adversarial
detection. Its "memes" add that explainability research is uncertainty research: explanatory
evaluation reduces uncertainty.

Below, each takeaway is tied to the chapter sections whose claims test it, with this run's
verdicts (`scoreboard.TAKEAWAYS` holds the mapping; a test checks that every section it names
exists). The last row is this book's own: the three robust-training chapters have no slide of
takeaways.
""")
code(r'''
display(Markdown(scoreboard.takeaways_markdown(CLAIMS_DIR, link_prefix="")))
rows = scoreboard.takeaway_rows(tables)
tested = [r for r in rows if r["claims"]]
if len(tested) >= 2:
    share = {r["takeaway"]: r["counts"]["reproduced"] / len(r["claims"]) for r in tested}
    top, bottom = max(share.values()), min(share.values())
    best = [t for t, v in share.items() if v == top]
    worst = [t for t, v in share.items() if v == bottom]
    if top == bottom:
        say(f"{count(len(tested), 'takeaway')} of {len(rows)} have claims in this run, and each has the same share of "
            f"reproduced claims ({fmt(100 * top, 2)} %).")
    else:
        say(f"{count(len(tested), 'takeaway')} of {len(rows)} have claims in this run. The best supported "
            f"({fmt(100 * top, 2)} % of its claims reproduced): " + "; ".join(f"*{t}*" for t in best)
            + f". The least ({fmt(100 * bottom, 2)} %): " + "; ".join(f"*{t}*" for t in worst) + ".")
    if {t.profile for t in tables} == {"smoke"}:
        say("Under the smoke profile these shares say nothing about the takeaways: every model trained for seconds.")
''', tags=["hide-input"])
md(r"""
## 3. What did not reproduce, and why

The list below is every claim of this run whose verdict is *not reproduced*, with a link to the
section that tested it; each chapter's discussion says why for its own rows. Four reasons recur
across the book:

* **Scale.** The `laptop` profile trains small networks for a few epochs on a CPU, where the papers
  trained for tens to hundreds of epochs on GPUs. Claims about robust training (Part 5's
  UDR gains, Part 6's Table 1) and about generative models (Part 7's realism rankings) are the
  most sensitive to it. The `full` profile exists for them.
* **Data set.** Every chapter runs on Fashion-MNIST; most sources report CIFAR-10, ImageNet,
  CURE-TSR or MNIST. An ordering between methods can survive the change of data set while the
  numbers cannot, which is why most rules test orderings and signs, not values.
* **Missing artifacts.** Inception weights cannot be loaded offline, so FID and KID use another
  Fashion-MNIST network's features (Part 7); the C3LT authors ship no Fashion-MNIST generator or
  encoder, so ours are trained here; some baselines (ExplainGAN) are not built.
* **A network's geometry.** The C3LT CNN's unpadded convolutions make every library's stretched
  CAM misplace its cells by about five pixels at the border (Part 4, section "Aligned CAMs"), which
  weighs on every CAM evaluation in Parts 2 and 4.
""")
code(r'''
lines = []
for t in tables:
    bad = [c for c in t.claims if c.verdict == claims.NOT_REPRODUCED]
    if bad:
        title = part(t.chapter)
        esc = lambda text: text.replace("[", "\\[").replace("]", "\\]")  # noqa: E731  (brackets inside link text)
        items = "; ".join(f"[{esc(c.claim)}]({t.chapter}.html#{c.to_dict()['anchor']})" for c in bad)
        lines.append(f"* **{title}** ({t.profile}, {count(len(bad), 'claim')} of {len(t)}): {items}.")
display(Markdown("\n".join(lines) if lines else "No claim of this run is *not reproduced*."))
''', tags=["hide-input"])
md(r"""
## 4. Future directions

The tutorial names three directions for research at the inference stage: **test-time
augmentation** (several augmentations of a data point pass through the network at inference;
the research is in designing the best augmentations), **active inference** (use the knowledge in
the network to ask *it* which augmentation or which label would help, given one data point), and
**uncertainty in explainability, label interpretation and trust quantification** (in some medical
and seismic applications there is no agreed-upon label at all). It adds **test-time interventions
for AI alignment**: humans altering a decision at test time, with experts in the loop rather than
end to end. The first is cheap enough to run here.

### 4.1. Test-time augmentation

A classifier $f$ gives softmax outputs $p(y \mid x)$. Test-time augmentation (TTA) passes $T$
views $a_1(x), \dots, a_T(x)$ of the same input through it and pools them,

$$
\bar p(y \mid x) = \frac{1}{T} \sum_{t=1}^{T} p\big(y \mid a_t(x)\big),
\qquad
\underbrace{H(\bar p)}_{\text{predictive}} =
\underbrace{\frac{1}{T}\sum_t H\big(p(\cdot \mid a_t(x))\big)}_{\text{mean entropy of the views}} +
\underbrace{\mathrm{MI}}_{\text{disagreement}} ,
$$

the same decomposition as Monte-Carlo dropout and ensembles in Part 3
(`uncertainty.decompose_uncertainty`), with the views in place of the weights: the mutual
information is zero when every view gets the same output and grows as they disagree. A view must
preserve the label, and that is the research question the tutorial points at: what is
label-preserving depends on the data. Fashion-MNIST's garments are centred and its shoes mostly
point left, so small shifts should be safe and a mirror image may not be.

We take the C3LT CNN of Part 1 (cached, trained without augmentation) and four view sets
(`tta.standard_views`): the identity alone (an ordinary prediction), the identity and four 1-pixel
shifts, the identity and its mirror image, and both. Each is evaluated on clean test images and
on four kinds of novel data from the book's suite: Gaussian noise, motion blur and low contrast at
level 3 of 5 (`corruptions.corrupt`), and images shifted by up to 2 pixels in each direction
(`tta.random_shift`), a domain shift the network never saw.
""")
code(r'''
# python -m robust_utils.cache build --set part8 pre-builds it (the same model as Part 1's)
clf = cache.get_model(recipes.recipe_set("part8", profile, seed=SEED)["C3LT CNN"], device=device, progress=False).eval()
N_TTA = {"smoke": 500, "laptop": 5000}.get(profile.name, 10000)
x_te, y_te = data.load_fashion_mnist("test", n=N_TTA, seed=SEED)
x_te, y_te = x_te.to(device), y_te.to(device)
CONDITIONS = {"clean": x_te}
for name in ("gaussian_noise", "motion_blur", "contrast"):
    CONDITIONS[name.replace("_", " ")] = corruptions.corrupt(x_te, name, 3, seed=SEED)
CONDITIONS["shifted ≤ 2 px"] = tta.random_shift(x_te, 2, seed=SEED)[0]
VIEW_SETS = {"none": "identity", "shifts": "shifts", "mirror": "flip", "shifts + mirror": "shifts+flip"}
all_views = tta.standard_views("shifts+flip")
# every view once per condition; a view set's pooled prediction averages its own views' outputs
probs = {c: tta.tta_probs(clf, xc, all_views) for c, xc in CONDITIONS.items()}
index = {v.name: i for i, v in enumerate(all_views)}


def pooled(c, vs):
    """The pooled prediction and uncertainty of view set vs on condition c, from the views' outputs."""
    return uncertainty.decompose_uncertainty(probs[c][[index[v.name] for v in tta.standard_views(VIEW_SETS[vs])]])



acc = pd.DataFrame({vs: {c: float((pooled(c, vs)["prediction"] == y_te).float().mean()) for c in CONDITIONS}
                    for vs in VIEW_SETS})
show_table((100 * acc).round(1), digits=1, caption=f"Accuracy (%) of the C3LT CNN on {N_TTA} test images, without TTA "
           "(none) and with each view set; rows: clean and novel data (level 3 of 5)")
''', tags=["hide-input"])
code(r'''
fig, ax = plt.subplots(figsize=(COL_W, 2.8), constrained_layout=True)
with_tta = [vs for vs in VIEW_SETS if vs != "none"]
w = 0.8 / len(with_tta)
xs = np.arange(len(CONDITIONS))
for k, vs in enumerate(with_tta):
    ax.bar(xs + (k - (len(with_tta) - 1) / 2) * w, 100 * (acc[vs] - acc["none"]), w, label=vs, color=f"C{k + 1}")
ax.axhline(0, color="k", lw=0.8)
ax.set_xticks(xs, list(CONDITIONS))
ax.set(ylabel="accuracy change vs no TTA\n(percentage points)", title="What each view set does to accuracy")
ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
plt.show()
gain = (acc.drop(columns="none").sub(acc["none"], axis=0))
best_vs = gain.mean().idxmax()
say((f"Averaged over the {len(CONDITIONS)} conditions, the view set that helps most is *{best_vs}* "
     f"({fmt(100 * gain[best_vs].mean(), 2)} percentage points against no TTA)" if gain[best_vs].mean() > 0 else
     f"Averaged over the {len(CONDITIONS)} conditions, no view set helps: the least harmful is *{best_vs}* "
     f"({fmt(100 * gain[best_vs].mean(), 2)} percentage points against no TTA)")
    + f". Shifts change clean accuracy by {fmt(100 * gain.loc['clean', 'shifts'], 2)} points "
    f"and accuracy on shifted images by {fmt(100 * gain.loc['shifted ≤ 2 px', 'shifts'], 2)}; adding the mirror image changes "
    f"clean accuracy by {fmt(100 * gain.loc['clean', 'mirror'], 2)} points on its own"
    + (", so on this data set the mirror is not a safe augmentation." if gain.loc['clean', 'mirror'] < 0 else "."))
''', tags=["hide-input"])
md(r"""
Which views are label-preserving? The accuracy of each view *alone* on clean images answers it
directly: a view that costs accuracy on its own adds wrong votes to the pool.
""")
code(r'''
per_view = pd.DataFrame({"accuracy alone, clean (%)": {v.name: 100 * float((probs["clean"][index[v.name]].argmax(1) == y_te)
                                                                          .float().mean()) for v in all_views}})
show_table(per_view.round(1), digits=1, caption="Each view on its own (clean test images)")
SHOES = [5, 7, 9]  # sandal, sneaker, ankle boot
shoe = torch.isin(y_te, torch.tensor(SHOES, device=y_te.device))
acc_shoe = {v: 100 * float((probs["clean"][index[v]][shoe].argmax(1) == y_te[shoe]).float().mean()) for v in ("identity", "mirror")}
say(f"On the {int(shoe.sum())} shoes among them (sandals, sneakers, ankle boots, which mostly point left in Fashion-MNIST), "
    f"the mirror view's accuracy is {fmt(acc_shoe['mirror'], 3)} % against {fmt(acc_shoe['identity'], 3)} % for the image "
    "itself.")
''', tags=["hide-input"])
md(r"""
Does the pooled uncertainty know when the prediction is wrong? For each condition we score every
image by the predictive entropy without TTA (against the plain prediction's errors), and by the
predictive entropy with the shifts and the shifts' disagreement alone (both against the pooled
prediction's errors), and measure how well each separates the misclassified images from the
correct ones (AUROC; 0.5 is chance, higher is better, all three scores point towards "more
uncertain"). The two TTA scores face the same errors, so they compare directly.
""")
code(r'''
det = {}
for c in CONDITIONS:
    none, sh = pooled(c, "none"), pooled(c, "shifts")
    wrong = (sh["prediction"] != y_te).cpu().numpy().astype(int)
    wrong0 = (none["prediction"] != y_te).cpu().numpy().astype(int)
    det[c] = {"entropy, no TTA": metrics.auroc(none["predictive"].cpu().numpy(), wrong0) if 0 < wrong0.sum() < len(wrong0) else np.nan,
              "entropy, shifts": metrics.auroc(sh["predictive"].cpu().numpy(), wrong) if 0 < wrong.sum() < len(wrong) else np.nan,
              "disagreement, shifts": metrics.auroc(sh["epistemic"].cpu().numpy(), wrong) if 0 < wrong.sum() < len(wrong) else np.nan}
det = pd.DataFrame(det).T
show_table(det.round(3), caption="AUROC of each uncertainty score for detecting the classifier's errors (↑)")
d = det.mean()
say(f"Averaged over the conditions, the AUROC of the entropy is {fmt(d['entropy, no TTA'])} without TTA and "
    f"{fmt(d['entropy, shifts'])} with the shifts; the disagreement alone reaches {fmt(d['disagreement, shifts'])}, "
    + compare(d["disagreement, shifts"], d["entropy, shifts"], "better than", "worse than", "as good as", tol=0.005)
    + " the pooled entropy it is part of. The views' disagreement is a second opinion on the same network, not a new "
    "model: it cannot see an error that every view makes.")
''', tags=["hide-input"])
md(r"""
### 4.2. The other directions, and where this book touches them

* **Active inference** asks the network which augmentation or which question would help, given
  one data point. Part 2's introspection already asks the network a question at inference ("why
  P, rather than Q?" for every Q), and Part 3's GradTrust scores how much a decision would have to
  change; choosing the next query from them is the open step.
* **Uncertainty in explainability, label interpretation and trust.** Part 4's VOICE measures the
  uncertainty of an explanation itself; Part 3 distinguishes trust in one decision from the
  trustworthiness of a system. Where annotators disagree about the label, neither the accuracy
  nor the calibration of Part 3 has a ground truth to stand on.
* **Test-time interventions for alignment.** Part 4's interventions (masking, insertion,
  deletion) are the measuring side of intervening; Part 7's counterfactuals are its generating
  side, the smallest change a person could ask for.

## 5. Which chapters have run on a GPU

The `full` profile is meant for one GPU: paper-scale epochs, with every chapter's models
pre-built by `make gpu-run`, which also writes the seconds per model and per notebook to
`runs/full_gpu.json`. While this book was written no GPU was available: the times and numbers in
its README were measured on 2-core CPUs under the `smoke` and `laptop` profiles, and the
eight-minute target of the full profile is a goal until a run records it. The lines below are
generated: what the record of a full GPU run in this checkout says, if there is one, and where
this page itself was executed.
""")
code(r'''
import json as _json

gpu_record = Path("..") / "runs" / "full_gpu.json"  # written by make gpu-run (the runner's summary)
if gpu_record.exists():
    rec = _json.loads(gpu_record.read_text(encoding="utf-8"))
    runs = [r for r in rec.get("notebooks", []) if isinstance(r, dict)]
    done = [f"{r['notebook']} ({fmt(r['seconds'])} s)" for r in runs if r.get("status") == "ok"]
    say(f"`runs/full_gpu.json` records a run under the **{rec.get('profile')}** profile on **{rec.get('device')}** "
        f"({rec.get('finished', 'unfinished')}): {len(done)} of {count(len(runs), 'notebook')} finished"
        + (f": {', '.join(done)}." if done else "."))
else:
    say("This checkout holds no record of a full-profile GPU run (`runs/full_gpu.json`): no chapter's full-profile "
        "numbers have been measured here.")
say(f"This page was executed under the **{profile.name}** profile on **{device}** "
    f"(torch {torch.__version__}{', ' + torch.cuda.get_device_name(0) if str(device).startswith('cuda') else ''}).")
''', tags=["hide-input"])
code(r'''
# Self-checks (they run, the book hides them)
for c, p in probs.items():
    assert p.shape == (len(all_views), N_TTA, 10), (c, p.shape)
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-4)
plain = training.predict_logits(clf, x_te).argmax(1)
# TTA with the identity alone is no TTA (up to an image or two that batch sizes may tip)
assert abs(float((plain == y_te).float().mean()) - acc.loc["clean", "none"]) <= 2 / N_TTA
assert ((acc >= 0) & (acc <= 1)).all().all()
assert all(float(pooled(c, "shifts")["epistemic"].min()) >= 0 for c in CONDITIONS)
assert not torch.equal(CONDITIONS["shifted ≤ 2 px"], x_te)
for r in scoreboard.takeaway_rows(tables):
    assert sum(r["counts"].values()) == len(r["claims"])
if not SMOKE:
    assert acc.loc["clean", "none"] > 0.8, acc
print(f"page ran in {time.time() - T0:.0f} s")
''', tags=["check"])
md(r"""
## Summary

* The scoreboard counts every chapter's verdicts under the profile it ran, and links each one to
  the section that computed it.
* The tutorial's takeaways are claims about gradients at inference; section 2 shows which of them
  this run's numbers test and with what verdicts.
* Claims failed here for four recurring reasons: scale, data set, missing artifacts and a
  network's geometry; each chapter discusses its own.
* Test-time augmentation pools a network's outputs over views of one input. It is only as good as
  its views: section 4.1 measures which views preserve Fashion-MNIST's labels, what pooling does to
  accuracy on clean and novel data, and whether the views' disagreement flags errors.

## Exercises

Each exercise says how long it takes and gives a hint; a worked solution follows in a hidden cell
(in the book: click to show).

1. **Bigger shifts** (10 min). Repeat the TTA table with 2-pixel shifts instead of 1-pixel ones.
   Which conditions gain and which lose? *Hint:* `tta.standard_views("shifts", pixels=2)` and
   `tta.tta_predict(clf, x, views)["prediction"]`.
2. **TTA as an out-of-distribution detector** (15 min). Score clean test images and the
   out-of-distribution digits of Part 1 by the shifts' disagreement and by the plain entropy. Which
   separates them better? *Hint:* `novel.load_digits_ood(n)` and `metrics.auroc(scores, labels)`
   with label 1 for the digits.
3. **Teaching** (15 min in class, no code). Pick one row of section 2 whose claims did not all
   reproduce. Have students read the chapter's discussion of it and decide: does the failure count
   against the takeaway, or against our protocol? *Hint:* compare the protocol column of the claim
   with the source's.
""")
code(r'''
# Solution to exercise 1: 2-pixel shifts
views2 = tta.standard_views("shifts", pixels=2)
ex1 = pd.DataFrame({"1-px shifts": acc["shifts"],
                    "2-px shifts": {c: float((tta.tta_predict(clf, xc, views2)["prediction"] == y_te).float().mean())
                                    for c, xc in CONDITIONS.items()}})
show_table((100 * ex1).round(1), caption="Accuracy (%) with 1- and 2-pixel shifts as views")
up = [c for c in CONDITIONS if ex1.loc[c, "2-px shifts"] > ex1.loc[c, "1-px shifts"]]
say("With 2-pixel shifts accuracy rises on " + (", ".join(up) if up else "no condition")
    + " and does not rise on the others.")
''', tags=["hide-input"])
code(r'''
# Solution to exercise 2: the views' disagreement as an OOD score
n_ood = min(N_TTA, 1000)
x_ood = novel.load_digits_ood(n_ood, seed=SEED).to(device)
views1 = tta.standard_views("shifts")
ind, ood = tta.tta_predict(clf, x_te[:n_ood], views1), tta.tta_predict(clf, x_ood, views1)
labels = np.r_[np.zeros(n_ood), np.ones(len(x_ood))].astype(int)
ex2 = {s: metrics.auroc(torch.cat([ind[k], ood[k]]).cpu().numpy(), labels)
       for s, k in (("disagreement", "epistemic"), ("entropy with TTA", "predictive"))}
plain_p = [training.predict_logits(clf, z).softmax(1) for z in (x_te[:n_ood], x_ood)]
ex2["entropy without TTA"] = metrics.auroc(torch.cat([metrics.predictive_entropy(p) for p in plain_p]).cpu().numpy(), labels)
show_table(pd.DataFrame({"AUROC ↑": ex2}).round(3), caption=f"Clean Fashion-MNIST vs {len(x_ood)} digits")
say(f"The disagreement separates digits from garments with AUROC {fmt(ex2['disagreement'])}, "
    + compare(ex2["disagreement"], ex2["entropy without TTA"], "better than", "worse than", "as well as")
    + f" the plain entropy ({fmt(ex2['entropy without TTA'])}).")
''', tags=["hide-input"])

write("notebooks/08_conclusions.ipynb")
