import StreamRecNumerics

// Dot-product scores of B query vectors against N item rows: the policy logits over the
// catalogue, or the scores used to rank items at serving time.

/// scores[B×N] = A[B×D] · E[N×D]ᵀ + bias[N] (bias nil: none).
public func dot_scores_forward(
    scores: UnsafeMutablePointer<Float>, A: UnsafePointer<Float>, E: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, B: Int, N: Int, D: Int
) {
    if B == 0 || N == 0 { return }
    if let bias { for b in 0..<B { (scores + b * N).update(from: bias, count: N) } }
    if D == 0 {  // sgemm refuses an empty inner dimension
        if bias == nil { scores.update(repeating: 0, count: B * N) }
        return
    }
    if B == 1 {   // one query (serving a user, a progressive-NDCG row): no packing of E
        BLAS.matvec(m: N, n: D, a: E, x: A, beta: bias == nil ? 0 : 1, y: scores)
        return
    }
    BLAS.sgemm(.none, .transpose, m: B, n: N, k: D, a: A, b: E, beta: bias == nil ? 0 : 1, c: scores)
}

/// Accumulates (+=): dA[B×D] += dscores · E, dE[N×D] += dscoresᵀ · A, dbias[N] += Σ_b dscores[b,:].
/// Any of the three may be nil when not needed.
public func dot_scores_backward(
    dA: UnsafeMutablePointer<Float>?, dE: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
    dscores: UnsafePointer<Float>, A: UnsafePointer<Float>, E: UnsafePointer<Float>,
    B: Int, N: Int, D: Int
) {
    if B == 0 || N == 0 { return }
    if let dbias {
        for b in 0..<B {
            let row = dscores + b * N
            for n in 0..<N { dbias[n] += row[n] }
        }
    }
    if D == 0 { return }
    if let dA { BLAS.sgemm(.none, .none, m: B, n: D, k: N, a: dscores, b: E, beta: 1, c: dA) }
    if let dE { BLAS.sgemm(.transpose, .none, m: N, n: D, k: B, a: dscores, b: A, beta: 1, c: dE) }
}
