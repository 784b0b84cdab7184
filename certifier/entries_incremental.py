"""The registry entry of ``--method incremental --base BASE`` (Ugare et al. 2024; docs/methods.md section 10).

The checks of the base store, its reading and the certificate are in
``methods_incremental``, the report in ``report_incremental`` (imported
when they are used).
"""
from __future__ import annotations

from .registry import Method, Option, register

# The direct certificates of the changed model its report sets beside it (report_incremental.DIRECT; a test
# checks that they agree).
DIRECT = ("cohen", "two-step")


def confidence(opts):
    """Overall confidence: two bounds (pA on BASE, zeta on the lost cA votes) joined by a union bound."""
    if opts.joint_alpha:
        return 1 - opts.alpha, (f"1 - alpha = {1 - opts.alpha:g} (--joint-alpha: pA on the base's estimation rows "
                                f"and zeta on the lost cA votes at alpha/2 each; union bound)")
    return 1 - 2 * opts.alpha, (f"1 - 2 alpha = {1 - 2 * opts.alpha:g} (pA on the base's estimation rows at alpha, "
                                f"zeta on the lost cA votes at alpha; union bound)")


register(Method(
    "incremental", ".methods_incremental:certify_incremental", confidence, section="10",
    overall="1 - 2 alpha (1 - alpha with `--joint-alpha`)",
    certifies="the changed model's smoothed prediction stays the base's class cA within sigma Phi^-1(pA - zeta): pA "
              "from the base store, zeta bounds the rate of cA votes the change lost",
    options=(Option("base", None, "incremental: the base store (original model) whose noisy copies STORE replays; "
                    "refused unless it is the store STORE recorded (replay_of) with the same sigma, n0, seed, noise, "
                    "indices and data.", metavar="BASE"),),
    check=".methods_incremental:check_options",  # before any work: --base given and BASE is the store STORE replays
    companion="base",
    read_extra=".methods_incremental:read_base",  # for every block, after reading STORE's rows: the base's rows
    report=".report_incremental:format_incremental_report", report_rows=("incremental",) + DIRECT,
    summary="Ugare et al. 2024: a changed model's radius sigma * Phi^-1(pA - zeta) from its base store's samples "
            "(--base BASE; STORE replays BASE's noisy copies).",
    extra_summary=".methods_incremental:summary",
    notes=("The predicted class is the base's cA, chosen on the base's selection rows.",),
))
