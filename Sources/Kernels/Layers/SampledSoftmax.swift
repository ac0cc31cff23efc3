import Foundation

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
public func sampled_softmax_forward(
    probs: UnsafeMutablePointer<Float>, logp: UnsafeMutablePointer<Float>,
    h: UnsafePointer<Float>, rows: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    trueLocal: UnsafePointer<Int32>, sampledLocal: UnsafePointer<Int32>,
    trueQ: UnsafePointer<Float>, sampledQ: UnsafePointer<Float>, weights: UnsafePointer<Float>?,
    B: Int, K: Int, D: Int
) -> Double {
    let C = 1 + K
    var total = 0.0
    for b in 0..<B {
        let hb = h + b * D, z = probs + b * C
        let t = Int(trueLocal[b])
        var acc = bias[t] - log(trueQ[b])
        let et = rows + t * D
        for d in 0..<D { acc += hb[d] * et[d] }
        z[0] = acc
        var mx = acc
        for k in 0..<K {
            let s = Int(sampledLocal[k])
            if s == t { z[1 + k] = -.infinity; continue }  // accidental hit
            var a = bias[s] - log(sampledQ[k])
            let es = rows + s * D
            for d in 0..<D { a += hb[d] * es[d] }
            z[1 + k] = a
            mx = max(mx, a)
        }
        var sum: Float = 0
        for j in 0..<C { sum += exp(z[j] - mx) }
        let lp = z[0] - mx - log(sum)
        logp[b] = lp
        let inv = 1 / sum
        for j in 0..<C { z[j] = exp(z[j] - mx) * inv }
        total -= Double(weights?[b] ?? 1) * Double(lp)
    }
    return total
}

/// Accumulates, with g[b,j] = dloss · w_b · (probs[b,j] − [j == 0]) and c_bj the candidate's
/// local index: dh[b,:] += Σ_j g[b,j] · rows[c_bj,:]; drows[c_bj,:] += g[b,j] · h[b,:];
/// dbias[c_bj] += g[b,j]. Shapes as in the forward; drows[U×D], dbias[U].
public func sampled_softmax_backward(
    dh: UnsafeMutablePointer<Float>, drows: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
    probs: UnsafePointer<Float>, h: UnsafePointer<Float>, rows: UnsafePointer<Float>,
    trueLocal: UnsafePointer<Int32>, sampledLocal: UnsafePointer<Int32>, weights: UnsafePointer<Float>?,
    dloss: Float, B: Int, K: Int, D: Int
) {
    let C = 1 + K
    for b in 0..<B {
        let scale = dloss * (weights?[b] ?? 1)
        if scale == 0 { continue }
        let p = probs + b * C, hb = h + b * D, dhb = dh + b * D
        let t = Int(trueLocal[b])
        for j in 0..<C {
            let c = j == 0 ? t : Int(sampledLocal[j - 1])
            if j > 0 && c == t { continue }  // accidental hit: a constant −∞ logit
            let g = scale * (j == 0 ? p[0] - 1 : p[j])
            let e = rows + c * D, de = drows + c * D
            for d in 0..<D {
                dhb[d] += g * e[d]
                de[d] += g * hb[d]
            }
            dbias[c] += g
        }
    }
}
