"""The ``smoothcert`` command line: each command wires options to a library function.

The data flow is visible here: ``sample`` (sampler/) writes a store, ``store``
commands (store/) inspect and move it, ``certify``/``calibrate``/``report``
(certifier/) read it. No computation lives in this file.
"""
from __future__ import annotations

import sys

import click


class SmoothcertGroup(click.Group):
    """Turns library errors into one-line messages on stderr with a non-zero exit."""

    argv: list[str] = []

    def main(self, args=None, *a, **kw):
        SmoothcertGroup.argv = list(sys.argv[1:] if args is None else args)
        return super().main(args, *a, **kw)

    def invoke(self, ctx):
        from .store.errors import StoreError

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("smoothcert: interrupted", err=True)
            sys.exit(130)
        except Exception as e:
            import os

            if os.environ.get("SMOOTHCERT_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if not isinstance(e, (StoreError, ValueError, OSError)):
                msg = f"{type(e).__name__}: {msg} (set SMOOTHCERT_DEBUG=1 for the traceback)"
            click.echo(f"smoothcert: error: {msg or type(e).__name__}", err=True)
            sys.exit(2)


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("smoothcert")
    except md.PackageNotFoundError:
        return "0+unknown"


@click.group(cls=SmoothcertGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), prog_name="smoothcert")
def main():
    """Randomized-smoothing certification from stored samples.

    \b
    1. smoothcert sample ...   evaluate a classifier once on n0 + n noisy copies per input
    2. smoothcert certify ...  compute any certificate offline from the store
    3. smoothcert report ...   certified accuracy, ACR and plots from certificate tables
    """


# --------------------------------------------------------------------------- sample
@main.command("sample")
@click.option("--model", "models", multiple=True, required=True, metavar="MODEL",
              help="A TorchScript file; a checkpoint of the locuslab/smoothing format (Cohen et al. 2019; read with "
                   "torch.load(weights_only=True), with its architecture's normalisation); a file holding a bare "
                   "state_dict (with --arch); or package.module:factory (with --weights). Repeat for an ensemble: all "
                   "members see the same noisy copies; each member's log-softmax is stored, and the rows are "
                   "softmax(mean of the members' log-softmax).")
@click.option("--arch", default=None, metavar="ARCH",
              help="resnet50, cifar_resnet20 or cifar_resnet110: the architecture of a --model file that holds a "
                   "bare state_dict (net.state_dict() or that of Sequential(NormalizeLayer, net)); it gets the "
                   "normalisation of the architecture's data set (ImageNet for resnet50, CIFAR-10 for the others). "
                   "A checkpoint names its own arch.")
@click.option("--weights", multiple=True, metavar="FILE",
              help="state_dict for a package.module:factory model (read with torch.load(weights_only=True); "
                   "'module.' prefixes of DataParallel/DDP are removed); the i-th --weights goes to the i-th "
                   "factory model.")
@click.option("--mean", default=None, metavar="M[,M,...]",
              help="Per-channel mean of the normalisation (x - mean) / std, applied inside the model AFTER the noise. "
                   "Refused for a checkpoint or --arch model, which brings its own.")
@click.option("--std", default=None, metavar="S[,S,...]", help="Per-channel std of the normalisation (see --mean).")
@click.option("--data", default=None, metavar="DATA",
              help="FILE.npz with x (N, C, H, W) float in [0, 1] or uint8 (scaled by 1/255) and y (N,); "
                   "IMAGES.npy,LABELS.npy; a folder of images in class sub-folders (read as RGB, labels from the "
                   "sorted sub-folder names, as torchvision's ImageFolder); a CIFAR-10/100 python batch or its folder "
                   "(cifar-10-batches-py: its test_batch); or package.module:callable returning a dataset "
                   "(ds[i] -> (image tensor C x H x W in [0, 1], label)). Required, except with --replay-of "
                   "(default: BASE's).")
@click.option("--resize", type=int, default=None, metavar="S",
              help="Image folders: resize each image's shorter side to S pixels (bilinear, as torchvision's Resize).")
@click.option("--crop", type=int, default=None, metavar="C",
              help="Image folders: then take the centre C x C crop (as torchvision's CenterCrop).")
@click.option("--preprocess", default=None, metavar="NAME",
              help="Image folders: a named preprocessing: imagenet (--resize 256 --crop 224).")
@click.option("--classes", default=None, metavar="FILE", type=click.Path(dir_okay=False, exists=True),
              help="Image folders: a class list, one folder name per line (its first word); line k is label k. For "
                   "folders holding some of the classes (e.g. ImageNet's synsets in their standard order).")
@click.option("--sigma", type=float, default=None,
              help="Noise level: Gaussian noise of std sigma in [0, 1] pixel space. Required, except with "
                   "--replay-of (default: BASE's).")
@click.option("--n0", type=int, default=None,
              help="Rows per input for the selection block (stored first).  [default: 100; with --replay-of: BASE's]")
@click.option("--n", "n", type=int, default=None,
              help="Rows per input for the estimation block.  [default: 100000; with --replay-of: required, P]")
@click.option("--batch-size", type=int, default=1000, show_default=True, help="Noisy copies per forward pass.")
@click.option("--seed", type=int, default=None,
              help="Noise seed; the noise of an input is a function of (seed, dataset index) only.  "
                   "[default: 0; with --replay-of: BASE's]")
@click.option("--device", default="auto", show_default=True, help="auto (cuda if available), cpu, cuda or cuda:N.")
@click.option("--indices", default=None, metavar="START:STOP:STEP",
              help="Which dataset indices to sample (Python slice rules), e.g. 0:10000:20 for every 20th.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="How rows are stored; hard labels are always taken from the full-precision softmax on the device.")
@click.option("--shard", default=None, metavar="K/N",
              help="Sample input slots K, K+N, K+2N, ... (default: from torchrun's RANK/WORLD_SIZE or "
                   "SLURM_ARRAY_TASK_ID/COUNT, else all). Shards may write into one store at the same time.")
@click.option("--core-model", default=None, metavar="MODEL",
              help="A model evaluated once per input on the clean input; its class is stored as core_predict (ACES).")
@click.option("--core-weights", default=None, metavar="FILE", help="state_dict for a package.module:factory --core-model.")
@click.option("--amp", type=click.Choice(["bf16", "fp16"]), default=None,
              help="Run the forward passes under autocast (softmax and argmax stay float32).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Run the model in channels-last (NHWC) memory format (default: on for image inputs on every "
                   "device, faster for convolutions on CPU and GPU; a model that cannot take it falls back to "
                   "contiguous, with a note).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
@click.option("--topk", type=int, default=None, metavar="K",
              help="Write a compact store (as 'store compact --topk K' of the full store, byte for byte): per row the "
                   "top K probabilities, their classes, the argmax and the entropy, and the n0 selection rows whole. "
                   "Full estimation rows are never stored (on a GPU they never leave it). 2 <= K <= min(classes, 256).")
@click.option("--adaptive-radius", type=float, default=None, metavar="R",
              help="Adaptive sampling (CERTIFYADP, Horváth et al. 2022, ensembles): stop sampling an input once target radius R is "
                   "certified or ruled out, and store only the rows drawn. Certify with --method adaptive --radius R.")
@click.option("--adaptive-stages", default="1000,10000,125000", show_default=True,
              help="Adaptive sampling: stage sizes n_1 < ... < n_s of S (clipped to --n).")
@click.option("--adaptive-alpha", type=float, default=0.001, show_default=True, help="Adaptive sampling: alpha.")
@click.option("--adaptive-beta", type=float, default=0.0001, show_default=True,
              help="Adaptive sampling: early-abort level beta.")
@click.option("--replay-of", "replay_of", default=None, metavar="BASE",
              help="Evaluate the model(s) on BASE's own noisy copies: its n0 selection rows and its first --n P "
                   "estimation rows (P <= BASE's n), for certify --method incremental --base BASE. sigma, seed, n0, "
                   "--indices and --data are BASE's (given ones must match); STORE records BASE's fingerprint.")
@click.argument("store_path", metavar="STORE")
def sample_cmd(models, arch, weights, mean, std, data, resize, crop, preprocess, classes, sigma, n0, n, batch_size,
               seed, device, indices, dtype, shard, core_model, core_weights, amp, channels_last, progress, topk,
               adaptive_radius, adaptive_stages, adaptive_alpha, adaptive_beta, replay_of, store_path):
    """Evaluate a classifier once on n0 + n Gaussian-noisy copies of each input, into STORE.

    Noise lives in [0, 1] pixel space: each copy is x + sigma * eps with eps ~ N(0, I),
    unclipped, and the --mean/--std normalisation is applied after the noise, inside
    the model (as in Cohen et al.). The model returns logits; the store keeps the
    softmax rows and the argmax of the full-precision softmax.

    A published checkpoint of the field ({'epoch', 'arch', 'state_dict', 'optimizer'},
    arch resnet50, cifar_resnet20 or cifar_resnet110) is read directly: --model
    checkpoint.pth.tar builds the network and puts its data set's normalisation in
    front of it; the store records the arch and the file's sha256 (store info).

    Re-running the same command resumes: complete inputs are skipped and a
    half-written input is redone. A STORE made with other settings (sigma, n0, n,
    seed, dtype, model, data, --topk) is refused with a message saying what differs.
    With --topk K the store is compact (store/FORMAT.md, "Compact stores").
    STORE is a folder, an fsspec URL (e.g. s3://bucket/store), or a .zip file
    (sampled into the folder STORE.sampling, packed into the zip once every
    input is complete).

    With --replay-of BASE, STORE is a replay store: the model(s) on BASE's own
    noisy copies (BASE's n0 selection rows and first --n P estimation rows), with
    BASE's sigma, seed, n0, indices and data; any given setting that differs from
    BASE's is refused before anything is written. Certify the changed model with
    'smoothcert certify STORE --method incremental --base BASE' (docs/incremental.md).
    """
    from .sampler.config import SampleConfig
    from .sampler.images import resolve_preprocess
    from .sampler.run import sample       # not the certifier: its scipy and pandas take ~1.3 s to import

    if replay_of is None:                 # required without a base store to take them from (click's own message)
        ctx = click.get_current_context()
        for name, value in (("data", data), ("sigma", sigma)):
            if value is None:
                raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == name))
    resize, crop = resolve_preprocess(preprocess, resize, crop)
    config = SampleConfig(models=models, weights=weights, mean=mean, std=std, data=data, resize=resize, crop=crop,
                          classes=classes, sigma=sigma, n0=n0, n=n,
                          batch_size=batch_size, seed=seed, device=device, indices=indices, dtype=dtype, shard=shard,
                          core_model=core_model, core_weights=core_weights, amp=amp, channels_last=channels_last,
                          progress=progress, log=lambda s: click.echo(s, err=True), topk=topk,
                          adaptive_radius=adaptive_radius,
                          adaptive_stages=adaptive_stages, adaptive_alpha=adaptive_alpha, adaptive_beta=adaptive_beta,
                          replay_of=replay_of, arch=arch)
    sample(store_path, config)


@main.command("demo")
@click.option("--out", "out_dir", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the test data, the store, the certificate tables and the plot.")
@click.option("--quick", is_flag=True, help="Fewer inputs and noisy copies (a smoke test, well under a minute).")
@click.option("--train", is_flag=True, help="Retrain the demo CNN instead of loading the shipped checkpoint.")
@click.option("--device", default="cpu", show_default=True, help="Device for training and sampling.")
def demo_cmd(out_dir, quick, train, device):
    """Run the whole pipeline on bundled data: a small CNN on scikit-learn's digits.

    Loads the shipped checkpoint (trained with Gaussian noise augmentation,
    sigma 0.25, by sampler/train.py) or retrains it, samples a test subset,
    certifies it with every method the certifier has, prints the tables and
    writes a plot.
    """
    from .demo import run_demo

    run_demo(out_dir, quick=quick, train=train, device=device, echo=click.echo)


# --------------------------------------------------------------------------- store
@main.group("store")
def store_group():
    """Inspect, import, verify, merge and export sample stores."""


@store_group.command("import")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("store")
@click.option("--sigma", type=float, required=True, help="Noise level the rows were sampled at.")
@click.option("--n0", type=int, required=True, help="Rows per input in the selection block (the first n0 rows).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=None,
              help="Stored row dtype [default: the dtype of SRC's probs, i.e. lossless].")
@click.option("--compact-topk", "compact_topk", type=int, default=None, metavar="K",
              help="Write a compact store: per row the top K probabilities, their classes and the exact entropy, and "
                   "the n0 selection rows whole (store/FORMAT.md; exact for cohen, two-step, uncertainty, aces, ...).")
def store_import(src, store, sigma, n0, dtype, compact_topk):
    """Build STORE from arrays computed elsewhere (SRC.npz).

    \b
    SRC keys: probs (N, n0+n, m) softmax rows, selection block first;
    labels (N,); optional idx (N,) dataset indices, core_predict (N,),
    member_logprobs or member_probs (N, n0+n, k, m).
    Everything is validated before anything is written; a failed import
    leaves no store behind. STORE: a folder, a .zip, or an fsspec URL.
    """
    from tqdm.auto import tqdm

    from .store.importer import import_npz

    with tqdm(desc="import", unit="input", leave=False) as bar:
        if compact_topk is not None:
            from .store.compact import import_npz_compact

            import_npz_compact(src, store, sigma=sigma, n0=n0, dtype=dtype, topk=compact_topk, progress=bar.update)
        else:
            import_npz(src, store, sigma=sigma, n0=n0, dtype=dtype, progress=bar.update)
    from .store import open_store

    with open_store(store) as st:
        click.echo(f"imported {st.n_inputs} inputs x ({st.n0} + {st.n}) rows x {st.num_classes} classes "
                   f"({st.dtype}) into {store}")


@store_group.command("info")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def store_info(store, as_json):
    """Print who made STORE, when and with what, its checksum summary, then all its metadata."""
    import json

    from .store import open_store
    from .store.share import provenance_lines

    with open_store(store) as st:
        info = st.info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for line in provenance_lines(info):
        click.echo(line)
    runs = info.pop("runs", {})
    for k, v in info.items():
        if isinstance(v, dict):
            click.echo(f"{k}:")
            for k2, v2 in v.items():
                click.echo(f"  {k2}: {v2}")
        else:
            click.echo(f"{k}: {v}")
    for name, rec in runs.items():
        click.echo(f"run {name}: " + ", ".join(f"{k}={v}" for k, v in rec.items()))


@store_group.command("verify")
@click.argument("store")
def store_verify(store):
    """Check every input of STORE against its checksum; name each damaged or missing input.

    Exit 0 when every input is complete and intact, 1 otherwise.
    """
    from tqdm.auto import tqdm

    from .store import open_store

    with open_store(store) as st:
        with tqdm(total=st.n_inputs, desc="verify", unit="input", leave=False) as bar:
            problems = st.verify(progress=bar.update)
        n = st.n_inputs
    for slot, _idx, msg in problems:
        click.echo(f"{store}: slot {slot}: {msg}")
    if problems:
        click.echo(f"{len(problems)} of {n} inputs damaged or incomplete", err=True)
        sys.exit(1)
    click.echo(f"{store}: all {n} inputs complete and intact")


@store_group.command("export")
@click.argument("store")
@click.argument("out")
def store_export(store, out):
    """Pack STORE (a folder, .zip or URL) into a new OUT.zip for sharing; smoothcert reads OUT.zip directly.

    The copy is byte for byte and checked (same fingerprint) before it is put in place.
    """
    from .store.share import export_zip

    r = export_zip(store, out)
    click.echo(f"exported {store} to {out}: {r['complete']} of {r['inputs']} inputs complete, "
               f"{r['bytes'] / 2**20:.1f} MiB, fingerprint {r['fingerprint']}")


@store_group.command("merge")
@click.argument("stores", nargs=-1, required=True)
@click.option("--data", default=None,
              help="The data set the parts were sampled from (as for 'sample --data'): parts sampled on different "
                   "--indices have different data fingerprints, and each is then checked against DATA.")
@click.option("--assume-same-data", is_flag=True,
              help="Merge parts whose data cannot be checked (imported stores fingerprint their own .npz); "
                   "the merged store records that the data check was skipped.")
def store_merge(stores, data, assume_same_data):
    """Merge stores sampled separately: STORES... is two or more stores, then a new OUT.

    \b
    Refused, each with its own message: different format version, sigma, n0, n,
    classes, dtype, layout, ensemble, seed, noise scheme, model (fingerprint),
    normalisation, data fingerprint; a dataset index in two parts; a part with
    an incomplete input; an existing OUT. Every input is checksum-verified on
    the way; inputs are ordered by dataset index; each part's metadata and
    runs are kept (merged_from, runs/part<i>.<run>).
    """
    from tqdm.auto import tqdm

    from .sampler.merge import merge_stores  # the store's merge, with --data checked by the sampler's fingerprint

    if len(stores) < 3:
        raise ValueError("store merge: give at least two stores to merge, then OUT")
    *parts, out = stores
    with tqdm(desc="merge", unit="input", leave=False) as bar:
        r = merge_stores(parts, out, data=data, assume_same_data=assume_same_data, progress=bar.update)
    click.echo(f"merged {len(parts)} stores ({r['inputs']} inputs) into {out}, fingerprint {r['fingerprint']}")


@store_group.command("compact")
@click.argument("src")
@click.argument("out")
@click.option("--topk", type=int, required=True, metavar="K",
              help="Probabilities kept per row (with their classes), 2 <= K <= min(classes, 256).")
def store_compact(src, out, topk):
    """Write OUT, a compact copy of the full store SRC: per row the top K probabilities and the exact entropy.

    OUT keeps the n0 selection rows of each input whole (layout compact-s0).
    Certificates from OUT equal SRC's for cohen, cohen-predict, two-step,
    adaptive, uncertainty, aces and aces-predict; cdf and soft run on bounds
    of the values outside each row's top K (--compact-rule, docs/methods.md
    section 9).
    """
    from tqdm.auto import tqdm

    from .store.compact import compact_store

    with tqdm(desc="compact", unit="input", leave=False) as bar:
        r = compact_store(src, out, topk=topk, progress=bar.update)
    click.echo(f"compacted {r['inputs']} inputs of {src} into {out} (top-{r['topk']})")


# ------------------------------------------------------------------------- certify
class RegistryOptionsCommand(click.Command):
    """``certify``: the method options come from the certifier's registry, added when first needed.

    Every ``Option`` the registry declares (the common ones and each method's)
    becomes a flag after ``--out``, and ``--method``'s help lists the
    registered methods with their summaries; a new method needs no edit here.
    They are built on first use, so that other commands never import the certifier,
    and again whenever a method is registered or removed.
    """

    _own = None  # the options declared here
    _version = None  # the registry version the options were built from

    def get_params(self, ctx):
        from .certifier.registry import version

        if self._version != version():
            if self._own is None:
                self._own = list(self.params)
            at = next(i for i, p in enumerate(self._own) if p.name == "out") + 1
            self.params = self._own[:at] + _registry_click_options() + self._own[at:]
            next(p for p in self.params if p.name == "method").help = _method_help()
            self._version = version()
        return super().get_params(ctx)


def _method_help() -> str:
    from .certifier.registry import methods

    return "The certificate to compute, one of:\n\n" + "\n\n".join(f"{m.name}: {m.summary}" for m in methods())


def _registry_click_options() -> list:
    """A click option per declared certify option (the registry's declarations, common ones included)."""
    from pathlib import Path

    from .certifier.options import COMMON, ENSEMBLE, declared
    from .certifier.registry import method_options

    helps = {o.name: o.help for o in COMMON + ENSEMBLE}
    helps.update({o.name: " ".join(f"{who}: {text}" for who, text in per) for o, per in method_options()})
    out = []
    for name, o in declared().items():
        if not o.cli:
            continue
        kw = {"help": helps[name]}
        if o.type is bool:
            kw.update(is_flag=True, default=bool(o.default))
        elif o.parse is not None:  # list options: the text is parsed by the declaration
            kw.update(type=str, default=o.default_text(), show_default=o.default_text() is not None)
        elif isinstance(o.type, tuple):
            kw.update(type=click.Choice(list(o.type)), default=o.default, show_default=o.default is not None)
        elif o.type is Path:
            kw.update(type=click.Path(dir_okay=False), default=None)
        else:
            kw.update(type=o.type, default=o.default, show_default=o.default is not None)
        if o.metavar:
            kw["metavar"] = o.metavar
        out.append(click.Option([o.flag_name, name], **kw))
    return out


@main.command("certify", cls=RegistryOptionsCommand, context_settings={"ignore_unknown_options": False})
@click.argument("store")
@click.option("--method", "method", required=True, help="The certificate to compute (see smoothcert certify --help).")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Certificate table: .csv, .jsonl or .parquet (plus OUT.meta.json). Without --out the summary is "
                   "printed and nothing is written.")
@click.option("--scheduler", default=None, help="Address of a running dask.distributed scheduler.")
@click.option("--workers", type=int, default=None, help="Start a LocalCluster of N worker processes [default: threads].")
@click.option("--block-size", type=int, default=None, help="Inputs per task [default: ~64 MB of rows].")
@click.option("--verify", type=click.Choice(["full", "used"]), default="full", show_default=True,
              help="Check every stored part of each input against its checksum, or only the parts the method reads.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def certify_cmd(store, method, out, scheduler, workers, block_size, verify, quiet, **options):
    """Compute certificates for every input of STORE, print their summary and write them to --out.

    The network is never run: everything comes from the stored rows. The
    table's overall confidence (1 - alpha or 1 - 2 alpha) is recorded in
    OUT.meta.json. Without --out the summary and the confidence are printed
    and no file is written (no table, no sidecar). Classes and thresholds are
    chosen on the selection block (first n0 rows) only; estimates use the
    estimation block only. Options marked with a method's name are read by
    that method only.
    """
    connection = None
    if scheduler is not None or workers:  # the cluster starts while the certifier is imported and the store opened
        from .certifier.cluster import Connection

        connection = Connection(scheduler, workers)
    try:
        from .certifier.engine import certify_to
        from .certifier.options import from_command_line
        from .certifier.report import ConsoleSummary

        opts, to_apply = from_command_line(options)
        from .certifier.table import _suffix

        if out is None and quiet:
            raise ValueError("certify: --quiet without --out would show and keep nothing; give --out FILE or leave out "
                             "--quiet")
        if out is not None:
            _suffix(out)  # fail on a bad --out before any work
        applied = {}
        for opt, value in to_apply:  # e.g. --theta-from: thresholds from a calibration file, recorded in the sidecar
            applied[opt.name], warning = opt.apply(opts, value, store)
            if warning:
                click.echo(warning, err=True)
        import shlex

        from .store.locations import redact

        extra = {"command": redact(shlex.join(["smoothcert", *map(str, SmoothcertGroup.argv)])),  # no user:password@
                 "software_version": _version(), **applied}
        summary = ConsoleSummary()
        kw = dict(connection=connection, block_size=block_size, progress=not quiet, verify=verify)
        if out is not None:
            meta = certify_to(out, store, method, opts, extra_meta=extra, on_part=None if quiet else summary.add, **kw)
        else:  # nothing written: the summary only
            from .certifier.engine import run

            meta = run(store, method, opts, on_part=summary.add, **kw)
            meta.update(extra)
    finally:
        if connection is not None:
            connection.close()  # closed once: on success the run closed it already
    if not quiet:
        click.echo(summary.text(out))
        where = f"-> {out}" if out is not None else "not written (no --out)"
        click.echo(f"{summary.rows} certificates {where} (overall confidence {meta['confidence_statement']})")


# ------------------------------------------------------------------------ calibrate
@main.command("calibrate")
@click.argument("store")
@click.option("--uncertainty", default="entropy,confidence,margin", show_default=True,
              help="Comma list of entropy, confidence, margin.")
@click.option("--loss", default="0.01", show_default=True,
              help="Accepted loss of accuracy, a share of A0; a comma list gives one theta per value (e.g. 0.005,0.01,0.02,0.05).")
@click.option("--rows", type=int, default=1000, show_default=True, help="Rows of S per input for the majority label.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the thetas, A0, kept accuracies, accuracy curves and STORE's fingerprint as JSON "
                   "(for 'certify --theta-from').")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def calibrate_cmd(store, uncertainty, loss, rows, json_out, quiet):
    """Pick each uncertainty function's theta on a VALIDATION store (docs/methods.md section 3.1, Däubener et al. 2024 App. A).

    \b
    acc(theta): share of inputs whose plain majority label over the first
    --rows rows of S (V always wrong) is the label; A0 = acc(inf). Theta
    walks 1,000 steps from loose to strict (entropy ln(m)..0, confidence
    -0.1..-1, margin 0..-1); the answer is the strictest theta before
    accuracy first drops below (1 - loss) A0. Never calibrate on the store
    you certify: 'certify --theta-from' warns when the fingerprints match.
    """
    from tqdm.auto import tqdm

    from .certifier.calibrate import calibrate, format_results, write_calibration
    from .certifier.options import parse_float_list, parse_names
    from .store import open_store

    funcs = parse_names(uncertainty, "uncertainty", ("entropy", "confidence", "margin"))
    losses = parse_float_list(loss, "loss")
    if not funcs or not losses:
        raise ValueError("calibrate: give at least one --uncertainty function and one --loss")
    if rows < 1:
        raise ValueError(f"--rows must be at least 1, got {rows}")
    with open_store(store) as st:
        total = st.n_inputs
    with tqdm(total=total, desc="calibrate", unit="input", leave=False, disable=quiet) as bar:
        calib = calibrate(store, funcs, losses, rows=rows, progress=bar.update)
    click.echo(f"{store}: {calib['num_inputs']} inputs, first min({rows}, n) rows of S, fingerprint "
               f"{calib['store_fingerprint'][:12]}")
    click.echo(format_results(calib))
    if json_out:
        write_calibration(calib, json_out)
        click.echo(f"calibration -> {json_out}")


# -------------------------------------------------------------------------- report
@main.command("report")
@click.argument("results", nargs=-1, required=True)
@click.option("--radii", default="0,0.25,0.5,0.75,1.0", show_default=True, help="Radii for certified accuracy.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a certified-accuracy plot (PNG); for an --n-use table also STEM.n_use.png, accuracy against n.")
@click.option("--samples-needed", "samples_needed", default=None, metavar="R1,R2,...",
              help="For an --n-use table: per input and target radius, the smallest listed prefix that certifies it "
                   "(correct, radius >= R), summarised per setting (mean samples needed, share never certified).")
@click.option("--samples-table", "samples_table", type=click.Path(dir_okay=False), default=None,
              help="With --samples-needed: write the per-input samples needed (.csv, .jsonl or .parquet).")
def report_cmd(results, radii, plot, samples_needed, samples_table):
    """Certified accuracy at radii, ACR and abstain rate per setting of RESULTS tables.

    RESULTS are certificate tables written by 'smoothcert certify --out', and
    may include the field's published result files (tab-separated, header
    'idx label predict radius correct [time]', any file name, e.g. Cohen et
    al.'s), each reported and plotted as one setting named by its path.
    """
    import pandas as pd

    from .certifier.options import parse_float_list
    from .certifier.report import extra_plots, extra_sections, format_table, plot_certified_accuracy, summarize
    from .certifier.table import read_results

    rs = parse_float_list(radii, "radii")
    # several tables: _source tells their rows apart (e.g. the per-store shares of the uncertainty report)
    df = pd.concat([read_results(r).assign(_source=str(r)) if len(results) > 1 else read_results(r) for r in results],
                   ignore_index=True)
    click.echo(format_table(summarize(df, rs)))
    for text in extra_sections(df, rs):
        click.echo("")
        click.echo(text)
    from .certifier.report_prefixes import report_lines
    from .certifier.table import read_meta

    for line in report_lines(df, samples_needed, plot, samples_table, {str(r): read_meta(r) for r in results}, rs):
        click.echo(line)
    if plot:
        plot_certified_accuracy(df, plot)
        click.echo(f"plot -> {plot}")
        stem = plot[:-4] if plot.lower().endswith(".png") else plot
        for p in extra_plots(df, stem):
            click.echo(f"plot -> {p}")


if __name__ == "__main__":
    main()
