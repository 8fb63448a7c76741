"""Second order (``order=2``): the gradient of the gradient, against finite differences.

Who needs it: second-order optimizers, Hessian-vector products, gradient penalties (WGAN-GP,
R1), meta-learning -- anything that differentiates a gradient. A ``tf.custom_gradient`` whose
grad fn is not itself differentiable passes every first-order check and silently breaks those:

* NumPy inside the grad fn (``np.exp(x.numpy())``), ``tf.stop_gradient``, a Python float:
  where the whole gradient goes through them, the second derivative is ``None`` ->
  ``disconnected_gradient`` ("second order" in the message);
* where only part of it does (``s = tf.stop_gradient(tf.sigmoid(x))`` "for stability", then
  ``dy * (s + x * s * (1 - s))``), or through an op whose own gradient is wrong, the second
  derivative exists but is wrong -> ``second_order_mismatch``. (Values the grad fn closes over
  from the forward function are fine: outer tapes record the forward pass too.)
* a second derivative that is NaN/Inf where the reference is finite -> ``nonfinite_gradient``.

Method. ``g(theta) = J(theta)^T v`` is the VJP the first-order check computed, with the same
cotangent ``v``. With a second random, signed cotangent ``w`` and nested tapes (reverse over
reverse), autodiff gives ``H^T w = d<w, g>/d theta``; along a direction ``u`` that is
``<w, (dg/dtheta) u>``, the derivative of ``t -> <w, g(theta + t u)>`` at 0. That line function
is evaluated at ``t = 0, +-h, +-2h`` (five VJPs) and judged by
:func:`gradcheck._numerics.judge_lines` exactly as the first-order lines are: the Richardson
estimate ``|D(h) - D(2h)| / 3`` plus the rounding floor ``rho / h``, times ``SAFETY``; kinks of
the gradient (ReLU's step, ELU's kink in ``f'``) pass when the analytic value lies between the
one-sided slopes. The routes are the core's:

* elementwise targets (the core confirmed the Jacobian diagonal): ``dg/dx`` is diagonal too,
  so moving every element at once along the core's per-element scale ``s`` gives every
  element's second derivative ``w_i v_i f''(x_i) s_i^2`` from the same five VJPs;
* everything else (weights, broadcast parameters, non-elementwise inputs, cross terms): one
  random direction ``u`` (``u_k`` signed, scaled by ``max(1, |theta_k|)``) through all of them.

Where the values are compared. Like the first-order check, the numerical side runs on the
float64 reference whenever the target runs there. The *analytic* second derivative is taken
there too (nested tapes on the float64 twin: same code, same weights): second derivatives are
long chains with heavy cancellation (``1 - tanh^2`` twice over), and in float32/float16 their
rounding, not the code, would set the tolerance; bugs in a grad fn's differentiability do not
depend on the dtype. So the analytic allowance is ``ANALYTIC_ULPS`` roundings of the reference
dtype, of ``|analytic|`` plus the chain-rule terms' size ``|w| |v| max(1, |x|, |f|) s^2`` (the
core's floor, one order up). The target's own dtype is still run through nested tapes, for what
*can* differ there: a ``None`` second derivative (-> ``disconnected_gradient`` when the finite
differences show the gradient does depend on that quantity) and NaN/Inf where the reference is
finite. If the reference itself is float16/bfloat16 (the target runs in no wider dtype), finite
differences of a gradient are meaningless and the check is skipped, noted in
``report.meta["skipped"]``.

Cost: one nested-tape pass in the target's dtype and one in the reference, five reference VJPs
for the elementwise route and four more for the directional one; a param with a ``None`` second
derivative costs four more. ``bench/beyond_cost.py`` measures it against the first-order check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ._arrays import _backward, _f64, _index, _said, _signed, _tail
from ._numerics import ANALYTIC_ULPS, machine_eps
from ._records import Add, ForwardBackward, Reference, Skip, cast_floats
from ._targets import weights_set_to

__all__ = ["check_second_order"]

_HINT = ("the gradient is computed in a way that is not itself differentiable: NumPy or "
         ".numpy(), tf.stop_gradient (also the one tf.nn.moments puts on the mean, which leaves "
         "the first derivative intact but not the second), Python floats, or another custom "
         "gradient whose own gradient is wrong; a tf.custom_gradient's grad fn must be built "
         "from TensorFlow ops on tensors the tape sees")


def check_second_order(fb: ForwardBackward, ref: Reference, *, add: Add, skip: Skip) -> None:
    """Check the second derivative of ``fb``'s target after its first-order check: findings
    through ``add``, a check that cannot run through ``skip``."""
    if not np.isfinite(fb.y64).all():
        return  # reported by the core; nothing to difference
    usable = [k for k, p in enumerate(fb.params) if p.grad is not None]
    if not usable:
        return  # no usable first derivative: the core's findings say why
    if machine_eps(ref.dtype.name) > machine_eps("float32"):
        skip(f"order=2: the target runs in no dtype wider than {ref.dtype.name}, where "
             f"finite differences of a gradient cannot resolve a second derivative")
        return
    try:
        _SecondOrder(fb, ref, usable, add, skip).execute()
    except Exception as exc:  # noqa: BLE001 - the target's own failure is a finding
        add("error", f"raised {type(exc).__name__} in the second-order check "
            f"(differentiating the gradient): {_said(exc)}; {_HINT}",
            exception=type(exc).__name__, traceback_tail=_tail(exc), order=2)


class _SecondOrder:
    def __init__(self, fb: ForwardBackward, ref: Reference, usable: list[int], add: Add,
                 skip: Skip):
        self.fb, self.ref, self.add, self.skip = fb, ref, add, skip
        self.params = fb.params
        self.usable = usable
        self.diag = [k for k in usable if k in ref.diagonal]
        self.rest = [k for k in usable if k not in self.diag]
        self.weights = [k for k, p in enumerate(self.params) if p.is_weight]
        self.w = {k: _signed(fb.rng, self.params[k].value.shape) for k in usable}
        self.u = {k: _signed(fb.rng, self.params[k].value.shape)
                  * np.maximum(1.0, np.abs(self.params[k].value)) for k in usable}
        # A function's float64 reference is the same Target called with float64 inputs.
        self.ref_is_target = ref.call is fb.target and ref.dtype == fb.dtype
        self.dy_path: dict[bool, tuple] = {}  # by hvp's ``reference``: (S, dS/dv, sum |terms|)

    # ---- analytic: nested tapes

    def hvp(self, reference: bool):
        """(H^T w on the diagonal params only, H^T w on all usable) as dicts k -> array|None."""
        fb, ref, params = self.fb, self.ref, self.params
        call = ref.call if reference else fb.target
        args = cast_floats(fb.args, ref.dtype) if reference else list(fb.args)
        variables = ref.weights if reference else [p.weight for p in params if p.is_weight]
        source = {k: (variables[self.weights.index(k)] if params[k].is_weight
                      else args[params[k].arg_index]) for k in self.usable}
        with tf.GradientTape(persistent=True) as outer:
            for k in self.usable:
                if not params[k].is_weight:
                    outer.watch(source[k])
            with tf.GradientTape() as inner:
                for k in self.usable:
                    if not params[k].is_weight:
                        inner.watch(source[k])
                y = call(args)
            v = tf.constant(fb.v, y.dtype)
            outer.watch(v)  # the gradient's own dependence on dy (:meth:`check_dy_path`)
            grads = _backward(inner, y, [source[k] for k in self.usable], v)
            g = {k: (tf.convert_to_tensor(gk) if isinstance(gk, tf.IndexedSlices) else gk)
                 for k, gk in zip(self.usable, grads)}
            w = {k: tf.constant(self.w[k], g[k].dtype) for k in self.usable if g[k] is not None}
            s_diag = [tf.reduce_sum(g[k] * w[k]) for k in self.diag if k in w]
            s_all = [tf.reduce_sum(g[k] * w[k]) for k in self.usable if k in w]
            s_diag = tf.add_n(s_diag) if s_diag else None
            s_all = tf.add_n(s_all) if s_all else None
        hv_all = (dict(zip(self.usable, outer.gradient(s_all, [source[k] for k in self.usable])))
                  if s_all is not None else {k: None for k in self.usable})
        if s_all is not None:
            terms = sum(float(np.sum(np.abs(_array(g[k]) * self.w[k]))) for k in w)
            self.dy_path[reference] = (float(s_all), _array(outer.gradient(s_all, v)), terms)
        if not self.rest:  # w on the diagonal params only is w on all: one backward pass
            hv_diag = {k: hv_all[k] for k in self.diag}
        else:
            hv_diag = (dict(zip(self.diag, outer.gradient(s_diag,
                                                          [source[k] for k in self.diag])))
                       if s_diag is not None else {k: None for k in self.diag})
        del outer
        return ({k: _array(h) for k, h in hv_diag.items()},
                {k: _array(h) for k, h in hv_all.items()})

    # ---- numerical: VJPs of the reference at perturbed points

    def vjp(self, directions: dict[int, np.ndarray], t: float) -> dict[int, np.ndarray | None]:
        ref, params = self.ref, self.params
        args = cast_floats(self.fb.args, ref.dtype)
        for k, d in directions.items():
            p = params[k]
            if not p.is_weight:
                args[p.arg_index] = tf.constant(p.value + t * d, ref.dtype)
        values = None
        if any(params[k].is_weight for k in directions):
            values = [p.value + t * directions[k] if k in directions else p.value
                      for k, p in enumerate(params) if p.is_weight]
        with weights_set_to(ref.weights, values):
            sources = [ref.weights[self.weights.index(k)] if params[k].is_weight
                       else args[params[k].arg_index] for k in self.usable]
            with tf.GradientTape() as tape:
                for k, s in zip(self.usable, sources):
                    if not params[k].is_weight:
                        tape.watch(s)
                y = ref.call(args)
            grads = _backward(tape, y, sources, tf.constant(self.fb.v, y.dtype))
        return {k: _array(g) for k, g in zip(self.usable, grads)}

    def line(self, directions: dict[int, np.ndarray], weights: dict[int, np.ndarray],
             axes: bool) -> dict[int, np.ndarray]:
        """Samples of psi(t) = <w, g(theta + t u)> at t = k h, k in -2..2 (per element if not
        ``axes``, else summed to a scalar)."""
        out = {}
        for step in (-2, -1, 0, 1, 2):
            g = self.g0 if step == 0 else self.vjp(directions, step * self.ref.h)
            terms = [weights[k] * g[k] if g[k] is not None else np.zeros_like(weights[k])
                     for k in weights]
            # Per element, the params share one shape; summed, each is summed on its own.
            total = sum(t.sum() for t in terms) if axes else sum(terms)
            out[step] = np.asarray(total, dtype=float)
        return out

    # ---- the check

    def execute(self) -> None:
        own_diag, own_all = self.hvp(reference=False)
        ref_diag, ref_all = (own_diag, own_all) if self.ref_is_target else self.hvp(True)
        self.check_dy_path(self.dy_path.get(not self.ref_is_target))
        self.g0 = self.vjp({}, 0.0)
        # None second derivatives: in the target's dtype (what users run) or in the reference.
        disconnected = [k for k in self.usable if own_all[k] is None or ref_all[k] is None]
        for k in disconnected:
            self.check_disconnected(k)
        self.check_nonfinite(own_all, ref_all)
        diag = [k for k in self.diag if ref_diag.get(k) is not None and k not in disconnected]
        if diag:
            self.check_diagonal(diag, ref_diag)
        joint = [k for k in self.usable if k not in disconnected]
        if self.rest and joint:
            self.check_joint(joint, ref_all)

    def scale(self, k: int) -> np.ndarray:
        """The size of the chain-rule terms per entry: |v| max(1, |x|, |f|) where x and f
        share a shape (the core's low-precision floor), else |v|max max(1, |theta|, |f|)."""
        p, f0 = self.params[k], self.ref.f0
        v = np.abs(self.fb.v)
        if p.value.shape == f0.shape:
            return v * np.maximum(np.maximum(1.0, np.abs(p.value)), np.abs(f0))
        size = max(1.0, float(np.max(np.abs(p.value), initial=0.0)),
                   float(np.max(np.abs(f0), initial=0.0)))
        return np.full(p.value.shape, float(np.max(v, initial=0.0)) * size)

    def rounding(self, w: dict[int, np.ndarray], samples: dict, per_entry: bool,
                 step: Any) -> Any:
        """Absolute rounding error of one sample of psi = <w, g>, the largest of three
        estimates, times the direction's scale (intermediates grow with the input, as in the
        core's ``rounding``):

        * the core's: eps_ref times the chain-rule terms' size ``|v| max(1, |x|, |f|)`` and
          ``|g|`` itself;
        * the one this target's backward pass actually shows: where the analytic gradient was
          computed in a narrower dtype d, ``|g_d - g_ref| / eps_d`` is the size of the terms
          that rounded (a steep ``tanh(20 x)`` multiplies ``1 - tanh^2`` by 20), so the
          reference rounds ``eps_ref`` of that;
        * the samples' own scatter: the fourth difference ``psi(2h) - 4 psi(h) + 6 psi(0) -
          4 psi(-h) + psi(-2h)`` is ``h^4`` times the fourth derivative (negligible at
          h = eps^(1/3)) plus rounding, at most 16 times one sample's: a fluctuation a smooth
          line cannot have.
        """
        fb = self.fb
        total = 0.0
        for k, wk in w.items():
            size = self.scale(k)
            g0, p = self.g0[k], self.params[k]
            if g0 is not None:
                size = size + np.abs(np.nan_to_num(g0))
                if fb.dtype != self.ref.dtype and p.grad is not None:
                    size = size + np.nan_to_num(np.abs(p.grad - g0), posinf=0.0) / fb.eps
            term = np.abs(wk) * size
            total = total + (term if per_entry else float(term.sum()))
        with np.errstate(invalid="ignore", over="ignore"):
            scatter = np.abs(samples[2] - 4 * samples[1] + 6 * samples[0] - 4 * samples[-1]
                             + samples[-2]) / 16
        return np.maximum(self.ref.eps_ref * total * step, np.nan_to_num(scatter, nan=0.0))

    def check_diagonal(self, diag: list[int], ref_diag: dict) -> None:
        fb, ref, params = self.fb, self.ref, self.params
        s = {k: ref.diagonal[k] for k in diag}
        w = {k: self.w[k] for k in diag}
        samples = self.line(s, w, axes=False)
        analytic = sum(ref_diag[k] * s[k] for k in diag)
        smax = np.max([s[k] for k in diag], axis=0)
        terms = sum(np.abs(w[k]) * self.scale(k) for k in diag)
        rounding = self.rounding(w, samples, True, smax)
        allowance = ANALYTIC_ULPS * ref.eps_ref * (np.abs(analytic) + terms * smax ** 2)
        verdict = ref.judge(samples, analytic, rounding, allowance)
        bad = ~verdict.ok
        # Next to a declared domain end the first order's step is the distance to it (down to
        # an ulp at 5 - 1e-15): differences of the gradient over it resolve nothing.
        near_end = sum(s[k] < np.maximum(1.0, np.abs(params[k].value)) for k in diag) > 0
        if (bad & near_end).any():
            self.skip(f"order=2: {int((bad & near_end).sum())} entries next to a declared "
                      f"domain end not compared (their step is shortened to the distance)")
            bad &= ~near_end
        nonfinite = bad & ~np.isfinite(analytic) & np.isfinite(verdict.numerical)
        if nonfinite.any():
            self.report_nonfinite(diag, analytic, verdict.numerical, nonfinite)
            bad &= ~nonfinite
        if not bad.any():
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.where(bad, np.abs(analytic - verdict.numerical)
                              / (verdict.bound + allowance + 1e-300), -1)
        j = int(np.nanargmax(excess))
        idx = _index(j, analytic.shape)
        bound = float(verdict.bound.flat[j] + allowance.flat[j])
        if len(diag) == 1:
            k = diag[0]
            p = params[k]
            per = w[k].flat[j] * fb.v.flat[j] * s[k].flat[j] ** 2
            what = (f"second derivative for {p.label} at index {idx}, x = "
                    f"{p.value.flat[j]:.9g} ({fb.dtype.name}): analytic (autodiff of the "
                    f"gradient) {analytic.flat[j] / per:.9g} vs numerical (finite differences "
                    f"of the gradient, {ref.dtype.name}) {verdict.numerical.flat[j] / per:.9g}"
                    f" ± {bound / abs(per):.3g}")
            extra = {"param": p.label, "x": p.value.flat[j],
                     "analytic": analytic.flat[j] / per,
                     "numerical": verdict.numerical.flat[j] / per, "bound": bound / abs(per)}
        else:
            labels = ", ".join(params[k].label for k in diag)
            what = (f"second derivatives for {labels} at index {idx}: analytic (autodiff of the "
                    f"gradient) {analytic.flat[j]:.9g} vs numerical (finite differences of the "
                    f"gradient, {ref.dtype.name}) {verdict.numerical.flat[j]:.9g} ± "
                    f"{bound:.3g} along the step")
            extra = {"params": [params[k].label for k in diag],
                     "analytic": analytic.flat[j], "numerical": verdict.numerical.flat[j],
                     "bound": bound}
        self.add("second_order_mismatch",
                 f"second-order mismatch: {what}; {int(bad.sum())} / {bad.size} elements "
                 f"({100 * bad.mean():.1f}%) mismatched; {_HINT}",
                 order=2, index=list(idx), mismatched=int(bad.sum()), total=int(bad.size),
                 **extra)

    def check_joint(self, joint: list[int], ref_all: dict) -> None:
        ref, params = self.ref, self.params
        u = {k: self.u[k] for k in joint}
        samples = self.line(u, self.w, axes=True)
        analytic = np.asarray(sum(float((ref_all[k] * u[k]).sum()) for k in joint))
        umax = max(float(np.max(np.abs(u[k]), initial=1.0)) for k in joint)
        terms = sum(float((np.abs(self.w[k]) * self.scale(k)).sum()) for k in self.usable)
        rounding = np.asarray(self.rounding(self.w, samples, False, umax))
        hu = sum(float((np.abs(ref_all[k]) * np.abs(u[k])).sum()) for k in joint)
        allowance = np.asarray(ANALYTIC_ULPS * ref.eps_ref * (hu + terms * umax ** 2))
        verdict = ref.judge(samples, analytic, rounding, allowance, directional=True)
        if bool(np.all(verdict.ok)):
            return
        labels = ", ".join(params[k].label for k in joint)
        if not np.isfinite(analytic) and np.isfinite(verdict.numerical):
            self.add("nonfinite_gradient",
                     f"second order: the gradient of the gradient with respect to {labels} is "
                     f"{float(analytic)} along a random direction where finite differences of "
                     f"the gradient give {float(verdict.numerical):.6g}; the tf.where NaN trap "
                     f"inside the gradient? (use the double-where safe input there too)",
                     order=2, params=[params[k].label for k in joint],
                     numerical=float(verdict.numerical))
            return
        bound = float(verdict.bound + allowance)
        self.add("second_order_mismatch",
                 f"second-order mismatch for {labels}: along a random direction u, the "
                 f"derivative of the gradient w.(dg/dtheta).u is {float(analytic):.9g} by "
                 f"autodiff of the gradient vs {float(verdict.numerical):.9g} ± {bound:.3g} by "
                 f"finite differences of the gradient ({ref.dtype.name}); {_HINT}",
                 order=2, analytic=float(analytic), numerical=float(verdict.numerical),
                 bound=bound, params=[params[k].label for k in joint])

    def check_dy_path(self, found: tuple | None) -> None:
        """The gradient must be differentiable in the upstream gradient ``dy`` too: the
        second derivative of a composition ``h(f(x))`` flows through ``f``'s VJP's ``dy``
        (``h''``'s term), and a grad fn that cuts it (``tf.stop_gradient(dy)``, ``dy``
        through NumPy) gets every such Hessian wrong while each check along ``x`` passes.
        From the nested tapes' pass, with no call of the target: ``S = <w, g(v)>`` is
        linear in ``v``, so ``dS/dv`` is None only where no path from ``dy`` reaches the
        gradient, which is right only where ``S`` is 0 for every ``v``: here, where ``S``
        is 0 within the rounding of the sum it is (``n eps`` of its terms' absolute sum,
        Higham's bound, times ``ANALYTIC_ULPS`` for the chain). A path cut in part (one
        term through ``stop_gradient(dy)``) is not judged: ``<v, dS/dv> = S`` holds only
        up to the rounding of the double backward pass, whose terms no sum here shows
        (softmax(30 x) missed it by 7e-12 relative)."""
        if found is None:
            return
        total, dv, terms = found
        n = self.fb.v.size + sum(self.params[k].value.size for k in self.usable)
        tolerance = ANALYTIC_ULPS * n * machine_eps(self.ref.dtype.name) * terms
        if dv is not None or not np.isfinite(total) or abs(total) <= tolerance:
            return
        self.add("disconnected_gradient",
                 f"second order: the gradient's derivative with respect to the upstream "
                 f"gradient dy is None, while the gradient depends on dy (<w, g> = "
                 f"{total:.6g}); the second derivative of a composition (h(f(x)), a loss of "
                 f"this output) flows through dy, and a grad fn that stops it "
                 f"(tf.stop_gradient(dy), dy through NumPy) gets it wrong; {_HINT}",
                 param="dy", order=2, expected=total)

    def check_disconnected(self, k: int) -> None:
        """A None second derivative is right only if the gradient does not depend on k."""
        p = self.params[k]
        samples = self.line({k: self.u[k]}, self.w, axes=True)
        umax = float(np.max(np.abs(self.u[k]), initial=1.0))
        verdict = self.ref.judge(samples, np.asarray(0.0),
                                 np.asarray(self.rounding(self.w, samples, False, umax)),
                                 np.asarray(0.0), directional=True)
        if bool(np.all(verdict.ok)):
            return
        self.add("disconnected_gradient",
                 f"second order: the gradient of the gradient with respect to {p.label} is "
                 f"None, but the gradient depends on {p.label} (directional derivative of the "
                 f"gradient {float(verdict.numerical):.6g} ± {float(verdict.bound):.3g} by "
                 f"finite differences, {self.ref.dtype.name}); anything differentiating this "
                 f"gradient (Hessians, gradient penalties) silently gets zero; {_HINT}",
                 param=p.label, order=2, numerical=float(verdict.numerical))

    def report_nonfinite(self, diag, analytic, numerical, bad) -> None:
        j = int(np.argmax(bad))
        idx = _index(j, analytic.shape)
        labels = ", ".join(self.params[k].label for k in diag)
        x = self.params[diag[0]].value.flat[j]
        per = self.w[diag[0]].flat[j] * self.fb.v.flat[j]
        self.add("nonfinite_gradient",
                 f"second order: the second derivative for {labels} is {analytic.flat[j]} at "
                 f"index {idx}, x = {x:.9g}, where finite differences of the gradient give "
                 f"{numerical.flat[j] / per:.6g} per unit step ({int(bad.sum())} / {bad.size} "
                 f"elements); the tf.where NaN trap inside the gradient (a branch not taken "
                 f"still back-propagates 0*inf)? use the double-where safe input there too",
                 order=2, index=list(idx), x=x, count=int(bad.sum()))

    def check_nonfinite(self, own_all: dict, ref_all: dict) -> None:
        for k in self.usable:
            mine, ref = own_all[k], ref_all[k]
            if mine is None or ref is None:
                continue
            bad = ~np.isfinite(mine) & np.isfinite(ref)
            if not bad.any():
                continue
            p = self.params[k]
            j = int(np.argmax(bad))
            idx = _index(j, mine.shape)
            self.add("nonfinite_gradient",
                     f"second order: the gradient of the gradient with respect to {p.label} is "
                     f"{mine.flat[j]} at index {idx} ({int(bad.sum())} / {bad.size} entries) "
                     f"where the {self.ref.dtype.name} reference is {ref.flat[j]:.6g}; the "
                     f"tf.where NaN trap inside the grad fn? (use the double-where safe input "
                     f"there too)", param=p.label, order=2, index=list(idx),
                     count=int(bad.sum()), reference=ref.flat[j])


def _array(t: Any) -> np.ndarray | None:
    if t is None:
        return None
    if isinstance(t, tf.IndexedSlices):
        t = tf.convert_to_tensor(t)
    return _f64(t)
