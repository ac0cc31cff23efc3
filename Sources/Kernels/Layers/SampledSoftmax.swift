import Foundation
import StreamRecNumerics

// Sampled softmax with the log-Q correction (Bengio & Senécal 2008; Jean et al. 2015), computed
// as TensorFlow's `sampled_softmax_loss` does (subtract_log_q, remove_accidental_hits). The
// softmax over all N items is replaced by one over C = 1 + K candidates: the true item at
// position 0, then K items drawn from a proposal Q. The K samples are SHARED by the whole batch
// (one draw per step, as TF does), so a step costs O(B·C·D) whatever N is.
//
// logit[b,j] = h_b · E[c_j] + bias[c_j] − log Q(c_j) for every candidate, the true one included;
// subtracting log Q keeps often-sampled items from dominating the normaliser. Q is the
// probability of drawing the item in one draw; a constant factor (K, for the expected count)
// shifts a whole row and cancels. Duplicates among the samples are kept, as in TF.
//
// Accidental hits: a sample equal to row b's true item would count it twice (once as the
// positive, once as a negative), so its logit in row b is −∞: probability 0, no gradient. The
// same sample stays an ordinary negative in the other rows.
//
// Item rows come gathered: rows[U×D], bias[U] hold the U distinct candidate items of the step
// (e.g. gathered with `embedding_forward`, F = 1, weights 1) and candidates refer to them by
// local index, one index per distinct item as for `embedding_backward`; so equal local
// indices mean the same item, which is how accidental hits are found.

/// probs[B×C] = softmax over each row's C = 1+K corrected candidate logits (accidental hits 0);
/// logp[B] = log probs[b, 0], the log-probability of each sample's true item.
/// Inputs: h[B×D], rows[U×D], bias[U], trueLocal[B], sampledLocal[K] (indices into rows),
/// trueQ[B], sampledQ[K] (proposal probabilities, > 0), weights[B] (nil means 1).
/// Returns Σ_b w_b · (−logp[b]).
///
/// The K shared samples make the sampled logits one GEMM: h[B×D] · S[K×D]ᵀ with S the samples'
/// rows gathered in sample order, plus their corrected biases (log Q taken once per sample).
public func sampled_softmax_forward(
    probs: UnsafeMutablePointer<Float>, logp: UnsafeMutablePointer<Float>,
    h: UnsafePointer<Float>, rows: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    trueLocal: UnsafePointer<Int32>, sampledLocal: UnsafePointer<Int32>,
    trueQ: UnsafePointer<Float>, sampledQ: UnsafePointer<Float>, weights: UnsafePointer<Float>?,
    B: Int, K: Int, D: Int
) -> Double {
    let C = 1 + K
    if B == 0 { return 0 }
    var sampledRows = [Float](repeating: 0, count: max(K * D, 1)), corrected = [Float](repeating: 0, count: max(K, 1))
    var logits = [Float](repeating: 0, count: max(B * K, 1))
    for k in 0..<K {
        let s = Int(sampledLocal[k])
        for d in 0..<D { sampledRows[k * D + d] = rows[s * D + d] }
        corrected[k] = bias[s] - log(sampledQ[k])
    }
    if K > 0 && D > 0 { BLAS.sgemm(.none, .transpose, m: B, n: K, k: D, a: h, b: sampledRows, c: &logits) }
    var total = 0.0
    for b in 0..<B {
        let hb = h + b * D, z = probs + b * C
        let t = Int(trueLocal[b])
        var acc = bias[t] - log(trueQ[b])
        let et = rows + t * D
        for d in 0..<D { acc += hb[d] * et[d] }
        z[0] = acc
        for k in 0..<K {
            // An accidental hit (a sample equal to the row's true item) gets probability 0.
            z[1 + k] = Int(sampledLocal[k]) == t ? -.infinity : logits[b * K + k] + corrected[k]
        }
        let mx = vmax(z, C)
        let sum = vexpShifted(out: z, z, shift: mx, C)
        let lp = acc - mx - log(sum)
        logp[b] = lp
        vscale(z, 1 / sum, C)
        total -= Double(weights?[b] ?? 1) * Double(lp)
    }
    return total
}

/// Accumulates, with g[b,j] = dloss · w_b · (probs[b,j] − [j == 0]) and c_bj the candidate's
/// local index: dh[b,:] += Σ_j g[b,j] · rows[c_bj,:]; drows[c_bj,:] += g[b,j] · h[b,:];
/// dbias[c_bj] += g[b,j]. Shapes as in the forward; drows[U×D], dbias[U].
///
/// The samples' part is two GEMMs over G[B×K] (accidental hits have probability 0, so g = 0
/// there): dh += G · S and dS = Gᵀ · h, scattered to the samples' rows.
public func sampled_softmax_backward(
    dh: UnsafeMutablePointer<Float>, drows: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
    probs: UnsafePointer<Float>, h: UnsafePointer<Float>, rows: UnsafePointer<Float>,
    trueLocal: UnsafePointer<Int32>, sampledLocal: UnsafePointer<Int32>, weights: UnsafePointer<Float>?,
    dloss: Float, B: Int, K: Int, D: Int
) {
    let C = 1 + K
    if B == 0 { return }
    var G = [Float](repeating: 0, count: max(B * K, 1))
    for b in 0..<B {
        let scale = dloss * (weights?[b] ?? 1)
        let p = probs + b * C, hb = h + b * D, dhb = dh + b * D
        let t = Int(trueLocal[b])
        for k in 0..<K { G[b * K + k] = scale * p[1 + k] }
        let g0 = scale * (p[0] - 1)
        let e = rows + t * D, de = drows + t * D
        for d in 0..<D {
            dhb[d] += g0 * e[d]
            de[d] += g0 * hb[d]
        }
        dbias[t] += g0
    }
    guard K > 0, D > 0 else { return }
    var sampledRows = [Float](repeating: 0, count: K * D), dS = [Float](repeating: 0, count: K * D)
    for k in 0..<K {
        let s = Int(sampledLocal[k])
        for d in 0..<D { sampledRows[k * D + d] = rows[s * D + d] }
    }
    BLAS.sgemm(.none, .none, m: B, n: D, k: K, a: G, b: sampledRows, beta: 1, c: dh)
    BLAS.sgemm(.transpose, .none, m: K, n: D, k: B, a: G, b: h, c: &dS)
    for k in 0..<K {
        let s = Int(sampledLocal[k])
        var gb: Float = 0
        for b in 0..<B { gb += G[b * K + k] }
        dbias[s] += gb
        for d in 0..<D { drows[s * D + d] += dS[k * D + d] }
    }
}
