"""Reference implementation of the collapsed (marginalised) Gaussian mixed model, every factor at once.

Not a fitting path: fits integrate out the one factor their :class:`~hmodels.plan.FitPlan` names,
in the engine (:mod:`hmodels.engine`) or the PyMC graph (:func:`hmodels.build.build_model` with
``collapse=``). This module integrates *all* factors out with a dense Woodbury identity and is kept
as an independent check of both in the tests (exact likelihood against a dense multivariate
normal, exact conditional draws against the GLS formulas).

For a gaussian family with identity link, the group effects integrate out analytically:
``y ~ N(X b, Z Λ Λᵀ Zᵀ + σ² I)`` (``diag(se²)`` instead of ``σ² I`` for known standard errors),
where ``Λ`` is block diagonal with one ``k × k`` block ``B_f = diag(sd_f) L_f`` per level of
each factor (``L_f`` the LKJ Cholesky factor, the identity for uncorrelated terms). With
``Ω = I`` (or ``diag(1/se²)``) and ``s = 1/σ²`` (or 1), the Woodbury identity and the matrix
determinant lemma give::

    M      = I_q + s Λᵀ (ZᵀΩZ) Λ                      (q × q, q = Σ levels × terms)
    log|V| = -n log s - Σ log ω + log|M|
    eᵀV⁻¹e = s eᵀΩe - s² cᵀ M⁻¹ c,   c = Λᵀ Zᵀ Ω e,   e = y - X b

``eᵀΩe`` and ``ZᵀΩe`` come from cross-products computed once, so a gradient costs nothing per
observation. They are of the centred design and of the residual of a least-squares fit
(:class:`CollapsedStats`), never of the raw response, whose sums of squares would cancel
catastrophically when the data lie far from zero. With one grouping factor ``M``
is block diagonal (one ``k × k`` block per level): closed form for ``k ≤ 2`` (elementwise over
levels), batched Cholesky otherwise. With several factors ``M`` is dense (Cholesky of
``q × q``; used when ``q <= MAX_DENSE_Q``).

NUTS samples exactly the joint model's ``b``, ``sd_*``, ``cor_*`` (LKJ) and ``sigma`` with the
same priors (the same builder helpers and prior slots). Afterwards the standardised group
effects ``z_<factor>`` are drawn exactly from their Gaussian conditional posterior
``N(s M⁻¹ c, M⁻¹)`` for each draw, and ``r_<factor> = z B_fᵀ``, so the Fit holds the same
variables as the joint (non-centred) model.
"""

from __future__ import annotations

import numpy as np

from .errors import SpecificationError
from .families import get_family

__all__ = ["collapsible", "build_collapsed", "CollapsedStats", "marginal_loglik_numpy", "draw_group_effects",
           "MAX_DENSE_Q"]

#: Largest total number of group effects for the dense (several factors) collapsed likelihood.
MAX_DENSE_Q = 600


def collapsible(design) -> tuple[bool, str]:
    """Whether a design can be fitted by the collapsed method, and why not.

    Examples
    --------
    >>> import hmodels as hm
    >>> from hmodels.collapsed import collapsible
    >>> collapsible(hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).design)
    (True, '')
    """
    spec = design.spec
    if not get_family(spec.family, spec.link).integrates_out:
        return False, (f"the collapsed method needs a gaussian family with identity link, "
                       f"not {spec.family} ({spec.link})")
    if not design.factors:
        return False, "the model has no grouping factors to integrate out"
    if len(design.factors) > 1:
        q = sum(f.n_levels * len(f.terms) for f in design.factors)
        if q > MAX_DENSE_Q:
            return False, (f"with several grouping factors the collapsed likelihood factorises a dense {q} × {q} "
                           f"matrix (more than {MAX_DENSE_Q} group effects)")
    return True, ""


class CollapsedStats:
    """Weighted cross-products of one design (the only data the collapsed likelihood reads).

    They are taken of the centred design ``Xc`` (predictors minus their means when there is an
    intercept) and of the residual ``y_r = y - Xc b_ref`` of a weighted least-squares fit, never of
    the raw response: with ``y`` near ``1e9``, ``yᵀy ~ 1e20`` and ``eᵀΩe = yᵀΩy - 2bᵀXᵀΩy + bᵀXᵀΩXb``
    would lose every digit to cancellation. ``eᵀΩe`` is then formed from ``d = T b - b_ref``
    (:meth:`offset`; ``T b`` are the coefficients on ``Xc``), exactly ``y - X b = y_r - Xc d``.

    Attributes
    ----------
    known_se : bool
        Residual SDs are the known ``se`` column (no ``sigma`` parameter).
    XtX, Xty, yty, sum_log_w, n
        ``XcᵀΩXc``, ``XcᵀΩy_r``, ``y_rᵀΩy_r``, ``Σ log ω``, number of rows.
    T, b_ref
        ``(p, p)`` map from the coefficients on ``X`` to those on ``Xc``, and the reference fit on ``Xc``.
    A, Zty, ZtX : list of arrays
        ``ZᵀΩZ``, ``ZᵀΩy_r``, ``ZᵀΩXc``. Single factor: per level ``(levels, k, k)``, ``(levels, k)``,
        ``(levels, k, p)``. Several factors: one dense ``(q, q)``, ``(q,)``, ``(q, p)`` (``single`` is False).
    """

    def __init__(self, design):
        from .engine.layout import reference_coefficients

        fam = get_family(design.spec.family, design.spec.link)
        y, X = np.asarray(fam.engine_outcome(design.y.astype(float)), dtype=float), design.X  # log y: lognormal
        if design.offset is not None:  # y ~ N(X b + offset, V): the cross-products are of y - offset
            y = y - design.offset
        n, p = X.shape[0], X.shape[1]
        self.known_se = design.se is not None
        w = 1.0 / design.se**2 if self.known_se else np.ones(n)
        self.n = n
        self.p = p
        self.sum_log_w = float(np.log(w).sum())
        # an exact reparameterisation: centred predictors (with an intercept) and a reference fit
        icol = list(design.fixed_terms).index("Intercept") if "Intercept" in design.fixed_terms else -1
        means = np.where(np.arange(p) == icol, 0.0, X.mean(axis=0)) if (icol >= 0 and p) else np.zeros(p)
        self.T = np.eye(p)
        if icol >= 0:
            self.T[icol] += means  # intercept on Xc = b0 + Σ mean_j b_j
        X = X - means
        self.b_ref = reference_coefficients(X, y, w)
        y = y - X @ self.b_ref
        Xw = X * w[:, None]
        self.XtX = Xw.T @ X
        self.Xty = Xw.T @ y
        self.yty = float((w * y) @ y)
        self.single = len(design.factors) == 1
        self.ks = [len(f.terms) for f in design.factors]
        self.levels = [f.n_levels for f in design.factors]
        if self.single:
            f = design.factors[0]
            Zw = f.Z * w[:, None]
            k, L = f.Z.shape[1], f.n_levels
            self.A = np.zeros((L, k, k))
            np.add.at(self.A, f.codes, Zw[:, :, None] * f.Z[:, None, :])
            self.Zty = np.zeros((L, k))
            np.add.at(self.Zty, f.codes, Zw * y[:, None])
            self.ZtX = np.zeros((L, k, p))
            np.add.at(self.ZtX, f.codes, Zw[:, :, None] * X[:, None, :])
        else:
            Zs = self._sparse_z(design)
            Zw = Zs.multiply(w[:, None]).tocsr()
            self.A = np.asarray((Zw.T @ Zs).todense())
            self.Zty = np.asarray(Zw.T @ y).ravel()
            self.ZtX = np.asarray(Zw.T @ X).reshape(-1, p)

    def offset(self, b):
        """The offset ``d = T b - b_ref`` of coefficients ``b`` on ``X`` from the reference fit on ``Xc``.

        ``b`` is a NumPy ``(S, p)`` array or a PyTensor vector; ``y - X b = y_r - Xc d``.
        """
        return b @ self.T.T - self.b_ref

    @staticmethod
    def _sparse_z(design):
        """The n × q group-effects matrix, columns ordered factor, level, term."""
        from scipy import sparse

        blocks = []
        for f in design.factors:
            k, L = f.Z.shape[1], f.n_levels
            rows = np.repeat(np.arange(design.n), k)
            cols = (f.codes[:, None] * k + np.arange(k)[None, :]).ravel()
            blocks.append(sparse.csr_matrix((f.Z.ravel(), (rows, cols)), shape=(design.n, L * k)))
        return sparse.hstack(blocks).tocsr()


# -- the PyMC model ---------------------------------------------------------------------------------
class BuiltCollapsed:
    """The collapsed PyMC model and what is needed to draw the group effects afterwards."""

    def __init__(self, model, stats, observed, centered, cor_vars, blocks):
        self.model = model
        self.stats = stats
        self.observed = observed
        self.centered = centered
        self.cor_vars = cor_vars
        self.blocks = blocks  # per factor: list of (idx, cor name or None)
        self.group_vars = {}


def build_collapsed(design, priors, centered=None) -> BuiltCollapsed:
    """PyMC model with the group effects integrated out (a ``pm.Potential`` marginal likelihood).

    Parameters
    ----------
    design : Design
    priors : PriorTable
        The same table as the joint model: the same slots and priors are used.
    centered : dict, optional
        Recorded only (the collapsed model has no group-effect parameterisation).

    Returns
    -------
    BuiltCollapsed

    Examples
    --------
    >>> import hmodels as hm
    >>> from hmodels.collapsed import build_collapsed
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> sorted(build_collapsed(m.design, m.priors).model.named_vars)[:3]
    ['Intercept_centered', 'L_cor_Subject', 'b']
    """
    import pymc as pm
    import pytensor.tensor as pt

    from .build import _cor_cholesky, _fixed_effects, _group_sd, obs_name, resolve_centering

    ok, why = collapsible(design)
    if not ok:
        raise SpecificationError(f"The collapsed model is not available: {why}.")
    stats = CollapsedStats(design)
    coords = {"term": list(design.fixed_terms), "obs": np.arange(design.n)}
    for f in design.factors:
        coords[f.factor] = list(f.levels)
        coords[f"{f.factor}__term"] = list(f.terms)
    by_param = {r.slot.param: r.prior for r in priors}
    cor_vars, blocks_out, Bs = {}, [], []
    with pm.Model(coords=coords) as model:
        if design.fixed_terms:
            _fixed_effects(design, by_param, priors.intercept_prior, pm, pt)  # defines "b"; eta unused
            b = model["b"]
        else:
            b = pt.zeros(0)
        for f in design.factors:
            sd = _group_sd(f, by_param, pm)
            k = len(f.terms)
            n_cor = sum(f.correlated)
            B = pt.diag(sd)
            cors, fblocks = [], []
            for j, (block, cor) in enumerate(zip(f.blocks, f.correlated)):
                idx = np.array(block)
                if cor:
                    L, cname, blabels = _cor_cholesky(f, j, block, n_cor, by_param, pm, pt)
                    cors.append((cname, blabels))
                    B = pt.set_subtensor(B[idx[:, None], idx[None, :]], sd[idx][:, None] * L)
                    fblocks.append((idx, f"L_{cname}"))
                else:
                    fblocks.append((idx, None))
            cor_vars[f.factor] = cors
            blocks_out.append(fblocks)
            Bs.append(B if k > 1 else sd[None, :])
        if stats.known_se:
            s = pt.as_tensor_variable(1.0)
            logdet_noise = -stats.sum_log_w
        else:
            p = by_param["sigma"]
            sigma = p.pymc_class()("sigma", **p.params)
            s = 1.0 / sigma**2
            logdet_noise = 2.0 * stats.n * pt.log(sigma) - stats.sum_log_w
        pm.Potential("marginal_loglik", _marginal_loglik(stats, b, Bs, s, logdet_noise, pt))
    built = BuiltCollapsed(model, stats, obs_name(design.spec),
                           centered if centered is not None else resolve_centering(design, False),
                           cor_vars, blocks_out)
    return built


def _marginal_loglik(st, b, Bs, s, logdet_noise, pt):
    """Symbolic log N(y | X b, V) from the cross-products (see the module docstring and CollapsedStats)."""
    if st.p:
        b = st.offset(b)  # e = y_r - Xc d: from here on, b is the offset d from the reference fit
        eOe = st.yty - 2.0 * pt.dot(b, st.Xty) + pt.dot(b, pt.dot(st.XtX, b))
    else:
        eOe = pt.as_tensor_variable(st.yty)
    if st.single:
        B = Bs[0]
        k = st.ks[0]
        Zte = st.Zty - (pt.dot(st.ZtX, b) if st.p else 0.0)  # (L, k)
        if k == 1:
            lam = B[0, 0]
            a = st.A[:, 0, 0]
            m = 1.0 + s * lam**2 * a
            c = lam * Zte[:, 0]
            logdet = pt.log(m).sum()
            quad = (c**2 / m).sum()
        else:
            BtAB = pt.matmul(pt.matmul(B.T, st.A), B)  # (L, k, k)
            M = pt.eye(k) + s * BtAB
            c = pt.dot(Zte, B)  # rows: Bᵀ (Zᵀ Ω e)_j
            if k == 2:
                m11, m12, m22 = M[:, 0, 0], M[:, 0, 1], M[:, 1, 1]
                det = m11 * m22 - m12**2
                c1, c2 = c[:, 0], c[:, 1]
                logdet = pt.log(det).sum()
                quad = ((m22 * c1**2 - 2.0 * m12 * c1 * c2 + m11 * c2**2) / det).sum()
            else:
                C = pt.linalg.cholesky(M)
                v = pt.linalg.solve_triangular(C, c[..., None], lower=True)
                logdet = 2.0 * pt.log(pt.diagonal(C, axis1=-2, axis2=-1)).sum()
                quad = (v**2).sum()
    else:
        Lam = _dense_lambda(st, Bs, pt)
        Zte = st.Zty - (pt.dot(st.ZtX, b) if st.p else 0.0)
        M = pt.eye(Lam.shape[0]) + s * pt.dot(Lam.T, pt.dot(st.A, Lam))
        c = pt.dot(Lam.T, Zte)
        C = pt.linalg.cholesky(M)
        v = pt.linalg.solve_triangular(C, c, lower=True)
        logdet = 2.0 * pt.log(pt.diag(C)).sum()
        quad = (v**2).sum()
    return -0.5 * (st.n * np.log(2 * np.pi) + logdet_noise + logdet + s * eOe - s**2 * quad)


def _dense_lambda(st, Bs, pt):
    """Block-diagonal Λ (q × q): one copy of B_f per level of each factor."""
    q = sum(L * k for L, k in zip(st.levels, st.ks))
    rows, cols, vals = [], [], []
    off = 0
    for B, L, k in zip(Bs, st.levels, st.ks):
        t1, t2 = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        base = off + np.arange(L)[:, None] * k
        rows.append((base + t1.ravel()[None, :]).ravel())
        cols.append((base + t2.ravel()[None, :]).ravel())
        vals.append(pt.tile(B.reshape((k * k,)) if k > 1 else B.reshape((1,)), L))
        off += L * k
    Lam = pt.zeros((q, q))
    return pt.set_subtensor(Lam[np.concatenate(rows), np.concatenate(cols)], pt.concatenate(vals))


# -- numpy: the same likelihood (for tests) and exact conditional draws of the group effects ------------
def _factor_B(draws, f, fblocks):
    """B_f per draw, shape (S, k, k), from flattened posterior draws."""
    sd = draws[f"sd_{f.factor}"]  # (S, k)
    S, k = sd.shape
    B = np.zeros((S, k, k))
    for idx, lname in fblocks:
        if lname is None:
            B[:, idx, idx] = sd[:, idx]
        else:
            B[:, idx[:, None], idx[None, :]] = sd[:, idx, None] * draws[lname]
    return B


def _conditional(stats, design, blocks, draws, S):
    """(M, c, s) per draw: the conditional posterior of the standardised effects is N(s M⁻¹c, M⁻¹)."""
    b = stats.offset(draws["b"]) if stats.p else np.zeros((S, 0))  # offset from the reference fit
    s = np.ones(S) if stats.known_se else 1.0 / draws["sigma"] ** 2
    Bs = [_factor_B(draws, f, fb) for f, fb in zip(design.factors, blocks)]
    if stats.single:
        B = Bs[0]
        Zte = stats.Zty[None] - np.einsum("lkp,sp->slk", stats.ZtX, b)  # (S, L, k)
        BtAB = np.einsum("sti,ltu,suj->slij", B, stats.A, B)
        k = B.shape[-1]
        M = np.eye(k) + s[:, None, None, None] * BtAB
        c = np.einsum("slt,sti->sli", Zte, B)
        return M, c, s, Bs
    q = stats.A.shape[0]
    Lam = np.zeros((S, q, q))
    off = 0
    for B, L, k in zip(Bs, stats.levels, stats.ks):
        for j in range(L):
            Lam[:, off + j * k: off + (j + 1) * k, off + j * k: off + (j + 1) * k] = B
        off += L * k
    Zte = stats.Zty[None] - b @ stats.ZtX.T  # (S, q)
    M = np.eye(q) + s[:, None, None] * (np.swapaxes(Lam, 1, 2) @ stats.A @ Lam)
    c = np.einsum("sai,sa->si", Lam, Zte)
    return M, c, s, Bs


def marginal_loglik_numpy(built, design, draws: dict) -> np.ndarray:
    """The collapsed log-likelihood in NumPy for flattened draws (``{name: (S, ...)}``); for checks.

    Examples
    --------
    >>> ll = marginal_loglik_numpy(built, model.design, {"b": b, "sd_Subject": sd, ...})  # doctest: +SKIP
    """
    st = built.stats
    S = next(iter(draws.values())).shape[0]
    M, c, s, _ = _conditional(st, design, built.blocks, draws, S)
    b = st.offset(draws["b"]) if st.p else np.zeros((S, 0))
    eOe = st.yty - 2 * b @ st.Xty + np.einsum("si,ij,sj->s", b, st.XtX, b)
    C = np.linalg.cholesky(M)
    logdet = 2 * np.log(np.diagonal(C, axis1=-2, axis2=-1)).reshape(S, -1).sum(-1)
    quad = (c * np.linalg.solve(M, c[..., None])[..., 0]).reshape(S, -1).sum(-1)
    noise = -st.sum_log_w + (0.0 if st.known_se else -st.n * np.log(s))
    return -0.5 * (st.n * np.log(2 * np.pi) + noise + logdet + s * eOe - s**2 * quad)


def draw_group_effects(built, design, posterior, seed=None, chunk: int = 200) -> dict:
    """Exact draws of ``z_<factor>`` and ``r_<factor>`` from their conditional posterior, per draw.

    Parameters
    ----------
    built : BuiltCollapsed
    design : Design
    posterior : xarray.Dataset
        Draws of ``b``, ``sd_*``, ``L_cor_*``, ``sigma`` (dims chain, draw, ...).
    seed : int, optional

    Returns
    -------
    dict
        ``{name: (dims, array)}`` ready for ``Dataset.assign``.

    Examples
    --------
    >>> new = draw_group_effects(built, model.design, idata["posterior"].to_dataset(), seed=1)  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    C_, D_ = posterior.sizes["chain"], posterior.sizes["draw"]
    S = C_ * D_
    names = ["b", "sigma"] + [f"sd_{f.factor}" for f in design.factors] + [
        ln for fb in built.blocks for _, ln in fb if ln is not None]
    flat = {}
    for n in names:
        if n in posterior:
            a = np.asarray(posterior[n].transpose("chain", "draw", ...).values, dtype=float)
            flat[n] = a.reshape(S, *a.shape[2:])
    zs = [np.empty((S, f.n_levels, len(f.terms))) for f in design.factors]
    rs = [np.empty_like(z) for z in zs]
    st = built.stats
    step = chunk if st.single else max(1, min(chunk, int(2e7 // max(1, st.A.shape[0] ** 2))))
    for lo in range(0, S, step):
        hi = min(S, lo + step)
        part = {k: v[lo:hi] for k, v in flat.items()}
        M, c, s, Bs = _conditional(st, design, built.blocks, part, hi - lo)
        chol = np.linalg.cholesky(M)
        sh = (s.reshape(-1, *([1] * (c.ndim - 1))))
        mean = sh * np.linalg.solve(M, c[..., None])[..., 0]
        xi = rng.standard_normal(c.shape)
        noise = np.linalg.solve(np.swapaxes(chol, -1, -2), xi[..., None])[..., 0]  # cov M⁻¹
        u = mean + noise
        if st.single:
            u = [u]
        else:
            parts, off = [], 0
            for L, k in zip(st.levels, st.ks):
                parts.append(u[:, off: off + L * k].reshape(-1, L, k))
                off += L * k
            u = parts
        for i, (ui, B) in enumerate(zip(u, Bs)):
            zs[i][lo:hi] = ui
            rs[i][lo:hi] = np.einsum("slj,sij->sli", ui, B)  # r_l = B z_l
    out = {}
    for f, z, r in zip(design.factors, zs, rs):
        dims = ("chain", "draw", f.factor, f"{f.factor}__term")
        out[f"z_{f.factor}"] = (dims, z.reshape(C_, D_, *z.shape[1:]))
        out[f"r_{f.factor}"] = (dims, r.reshape(C_, D_, *r.shape[1:]))
    return out
