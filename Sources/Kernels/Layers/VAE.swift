import Foundation

// The pieces of BCQ's conditional VAE (Fujimoto et al. 2019, github.com/sfujim/BCQ): the
// reparameterised latent, its KL term and the reconstruction loss. As in BCQ, log σ is clamped
// to [lo, hi] = [−4, 15] before use, and both the latent and the KL are computed from the
// clamped value; so each kernel clamps for itself and passes no gradient to a log σ outside the
// clamp. At the boundary itself the gradient passes, as torch.clamp's does.

/// Clamped log σ and whether the clamp let the gradient through.
@inline(__always)
private func clampedLogStd(_ s: Float, _ lo: Float, _ hi: Float) -> (Float, Bool) {
    s < lo ? (lo, false) : s > hi ? (hi, false) : (s, true)
}

/// z[N] = μ[N] + exp(clamp(logStd[N], lo, hi)) · eps[N], with the noise eps ~ N(0, 1) given.
public func reparameterize_forward(
    z: UnsafeMutablePointer<Float>, mu: UnsafePointer<Float>, logStd: UnsafePointer<Float>,
    eps: UnsafePointer<Float>, N: Int, lo: Float = -4, hi: Float = 15
) {
    for i in 0..<N {
        let (s, _) = clampedLogStd(logStd[i], lo, hi)
        z[i] = mu[i] + exp(s) * eps[i]
    }
}

/// Accumulates: dmu[N] += dz; dlogStd[N] += dz · eps · σ inside the clamp (0 outside).
public func reparameterize_backward(
    dmu: UnsafeMutablePointer<Float>, dlogStd: UnsafeMutablePointer<Float>,
    dz: UnsafePointer<Float>, logStd: UnsafePointer<Float>, eps: UnsafePointer<Float>,
    N: Int, lo: Float = -4, hi: Float = 15
) {
    for i in 0..<N {
        dmu[i] += dz[i]
        let (s, inside) = clampedLogStd(logStd[i], lo, hi)
        if inside { dlogStd[i] += dz[i] * eps[i] * exp(s) }
    }
}

/// KL(N(μ, σ²) ‖ N(0, 1)) per sample for mu, logStd [B×L], with s = clamp(log σ):
/// kl[B]: kl[b] = −½ Σ_l (1 + 2s − μ² − exp(2s)). Returns Σ_b kl[b].
public func vae_kl_forward(
    kl: UnsafeMutablePointer<Float>, mu: UnsafePointer<Float>, logStd: UnsafePointer<Float>,
    B: Int, L: Int, lo: Float = -4, hi: Float = 15
) -> Double {
    var total = 0.0
    for b in 0..<B {
        var acc: Float = 0
        for l in 0..<L {
            let m = mu[b * L + l]
            let (s, _) = clampedLogStd(logStd[b * L + l], lo, hi)
            acc += 1 + 2 * s - m * m - exp(2 * s)
        }
        kl[b] = -0.5 * acc
        total += Double(kl[b])
    }
    return total
}

/// Accumulates the gradient of dloss · Σ_b kl[b]: dmu += dloss · μ;
/// dlogStd += dloss · (exp(2s) − 1) inside the clamp (0 outside).
public func vae_kl_backward(
    dmu: UnsafeMutablePointer<Float>, dlogStd: UnsafeMutablePointer<Float>,
    mu: UnsafePointer<Float>, logStd: UnsafePointer<Float>, dloss: Float,
    B: Int, L: Int, lo: Float = -4, hi: Float = 15
) {
    for i in 0..<(B * L) {
        dmu[i] += dloss * mu[i]
        let (s, inside) = clampedLogStd(logStd[i], lo, hi)
        if inside { dlogStd[i] += dloss * (exp(2 * s) - 1) }
    }
}

/// Reconstruction loss of the decoded action xhat[N] against the logged action x[N]:
/// returns ½ Σ (xhat − x)².
public func vae_reconstruction_forward(xhat: UnsafePointer<Float>, x: UnsafePointer<Float>, N: Int) -> Double {
    var total = 0.0
    for i in 0..<N {
        let e = Double(xhat[i]) - Double(x[i])
        total += 0.5 * e * e
    }
    return total
}

/// Accumulates: dxhat[N] += dloss · (xhat − x). x is data, so it gets no gradient.
public func vae_reconstruction_backward(
    dxhat: UnsafeMutablePointer<Float>, xhat: UnsafePointer<Float>, x: UnsafePointer<Float>,
    dloss: Float, N: Int
) {
    for i in 0..<N { dxhat[i] += dloss * (xhat[i] - x[i]) }
}
