import Testing
import Foundation
import Kernels
import StreamRecNumerics

// The kernels of the RL recommenders (REINFORCE, DDPG, BCQ), checked as LayerGradientTests
// checks the others: each forward against a Double reference, each backward against central
// finite differences of that reference for every input with a gradient, and each backward for
// accumulating (+=). Shapes are small so every coordinate is checked.

/// Every analytic gradient agrees with the finite difference of `f` at `x` (in Double).
private func expectGradient(
    _ analytic: [Float], _ x: [Float], _ name: String,
    sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Double]) -> Double
) {
    #expect(analytic.count == x.count, "\(name): size", sourceLocation: sourceLocation)
    let xd = x.map(Double.init)
    for i in x.indices {
        let num = numericGrad(xd, i, f)
        #expect(close(Double(analytic[i]), num), "\(name)[\(i)]: \(analytic[i]) vs \(num)", sourceLocation: sourceLocation)
    }
}

/// A second backward into the same buffers doubled the first (which must not be all zero, or the
/// check would prove nothing).
private func expectDoubled(_ once: [Float], _ twice: [Float], _ name: String,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(once.contains { $0 != 0 }, "\(name): first backward left all zeros", sourceLocation: sourceLocation)
    for i in once.indices {
        #expect(close(Double(twice[i]), 2 * Double(once[i]), rel: 1e-5, abs: 1e-6),
                "\(name)[\(i)]: \(twice[i]) is not 2 × \(once[i])", sourceLocation: sourceLocation)
    }
}

private func zeros(_ n: Int) -> [Float] { [Float](repeating: 0, count: n) }

/// Double reference: log softmax per row of z[B×N], masked columns −∞ (and ignored).
private func refLogSoftmax(_ z: [Double], B: Int, N: Int, masked: Set<Int> = []) -> [Double] {
    var out = [Double](repeating: -.infinity, count: B * N)
    for b in 0..<B {
        var s = 0.0
        for j in 0..<N where !masked.contains(j) { s += exp(z[b * N + j]) }
        for j in 0..<N where !masked.contains(j) { out[b * N + j] = z[b * N + j] - log(s) }
    }
    return out
}

/// Double reference of the sampled softmax: per-row log-probability of the true item (candidate
/// 0) and the candidate probabilities (0 at accidental hits).
private func refSampled(
    h: [Double], rows: [Double], bias: [Double], trueLocal: [Int32], sampledLocal: [Int32],
    trueQ: [Float], sampledQ: [Float], B: Int, K: Int, D: Int
) -> (logp: [Double], probs: [Double]) {
    var logp = [Double](), probs = [Double]()
    for b in 0..<B {
        func logit(_ c: Int, _ q: Float) -> Double {
            var z = bias[c] - log(Double(q))
            for d in 0..<D { z += h[b * D + d] * rows[c * D + d] }
            return z
        }
        let t = Int(trueLocal[b])
        var z: [Double?] = [logit(t, trueQ[b])]
        for k in 0..<K { z.append(Int(sampledLocal[k]) == t ? nil : logit(Int(sampledLocal[k]), sampledQ[k])) }
        let s = z.reduce(0.0) { $0 + ($1.map { exp($0) } ?? 0) }
        logp.append(z[0]! - log(s))
        probs += z.map { $0.map { exp($0) / s } ?? 0 }
    }
    return (logp, probs)
}

@Suite struct RLLayerGradientTests {
    // MARK: Tanh

    @Test func tanhBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 101)
        let N = 12
        let x = randoms(N, &rng, -3, 3), r = randoms(N, &rng)
        var y = zeros(N)
        tanh_forward(out: &y, inp: x, N: N)
        for i in 0..<N { #expect(close(Double(y[i]), tanh(Double(x[i])), rel: 1e-6, abs: 1e-7), "y[\(i)]") }
        var dx = zeros(N)
        tanh_backward(dinp: &dx, dout: r, out: y, N: N)
        expectGradient(dx, x, "dx") { v in zip(v, r).reduce(0) { $0 + tanh($1.0) * Double($1.1) } }
        let once = dx
        tanh_backward(dinp: &dx, dout: r, out: y, N: N)
        expectDoubled(once, dx, "dx")
    }

    // MARK: Softmax

    @Test(arguments: [false, true])
    func logSoftmaxBackwardMatchesFiniteDifferences(_ withMask: Bool) {
        var rng = SplitMix64(seed: 103)
        let B = 3, N = 7
        var z = randoms(B * N, &rng, -3, 3)
        // Row 2 far from 0: exp would overflow Float without the max subtracted.
        for j in 0..<N { z[2 * N + j] += 200 }
        let masked: [Int32] = withMask ? [0, 1] : []
        let maskSet = Set(masked.map(Int.init))
        var logp = zeros(B * N)
        log_softmax_forward(logp: &logp, logits: z, masked: withMask ? masked : nil, M: masked.count, B: B, N: N)
        let ref = refLogSoftmax(z.map(Double.init), B: B, N: N, masked: maskSet)
        for i in 0..<(B * N) {
            if maskSet.contains(i % N) {
                #expect(logp[i] == -.infinity, "masked logp[\(i)] = \(logp[i])")
            } else {
                #expect(close(Double(logp[i]), ref[i]), "logp[\(i)]")
            }
        }
        // Objective Σ r ⊙ logp over the unmasked entries: masked ones are the constant −∞, so the
        // r given for them (non-zero here) must not reach any logit.
        let r = randoms(B * N, &rng)
        var dz = zeros(B * N)
        log_softmax_backward(dlogits: &dz, dlogp: r, logp: logp, B: B, N: N)
        expectGradient(dz, z, "dlogits") { v in
            let lp = refLogSoftmax(v, B: B, N: N, masked: maskSet)
            return (0..<(B * N)).reduce(0) { maskSet.contains($1 % N) ? $0 : $0 + lp[$1] * Double(r[$1]) }
        }
        for b in 0..<B { for j in maskSet { #expect(dz[b * N + j] == 0, "masked dlogits[\(b),\(j)]") } }
        let once = dz
        log_softmax_backward(dlogits: &dz, dlogp: r, logp: logp, B: B, N: N)
        expectDoubled(once, dz, "dlogits")
    }

    @Test(arguments: [false, true])
    func softmaxCrossEntropyBackwardMatchesFiniteDifferences(_ withMask: Bool) {
        var rng = SplitMix64(seed: 107)
        let B = 4, N = 9
        var z = randoms(B * N, &rng, -3, 3)
        let masked: [Int32] = withMask ? [0, 1] : []
        let maskSet = Set(masked.map(Int.init))
        // Masked logits made the largest, so leaving them in would change every probability.
        for b in 0..<B { for j in maskSet { z[b * N + j] = 8 } }
        let actions: [Int32] = [3, 2, 8, 5]
        let w = randoms(B, &rng, 0.1, 2)
        let dloss: Float = 0.7
        var probs = zeros(B * N), logp = zeros(B)
        let loss = softmax_cross_entropy_forward(probs: &probs, logp: &logp, logits: z, actions: actions, weights: w,
                                                 masked: withMask ? masked : nil, M: masked.count, B: B, N: N)
        func objective(_ v: [Double]) -> Double {
            let lp = refLogSoftmax(v, B: B, N: N, masked: maskSet)
            return (0..<B).reduce(0) { $0 - Double(w[$1]) * lp[$1 * N + Int(actions[$1])] }
        }
        let ref = refLogSoftmax(z.map(Double.init), B: B, N: N, masked: maskSet)
        #expect(close(loss, objective(z.map(Double.init))))
        for b in 0..<B {
            #expect(close(Double(logp[b]), ref[b * N + Int(actions[b])]), "logp[\(b)]")
            var rowSum = 0.0
            for j in 0..<N {
                let p = probs[b * N + j]
                rowSum += Double(p)
                if maskSet.contains(j) { #expect(p == 0, "masked probs[\(b),\(j)] = \(p)") }
                else { #expect(close(Double(p), exp(ref[b * N + j]), rel: 1e-4, abs: 1e-6), "probs[\(b),\(j)]") }
            }
            #expect(close(rowSum, 1, rel: 0, abs: 1e-5), "row \(b) sums to \(rowSum)")
        }
        var dz = zeros(B * N)
        softmax_cross_entropy_backward(dlogits: &dz, probs: probs, actions: actions, weights: w, dloss: dloss, B: B, N: N)
        expectGradient(dz, z, "dlogits") { Double(dloss) * objective($0) }
        for b in 0..<B { for j in maskSet { #expect(dz[b * N + j] == 0, "masked dlogits[\(b),\(j)]") } }
        let once = dz
        softmax_cross_entropy_backward(dlogits: &dz, probs: probs, actions: actions, weights: w, dloss: dloss, B: B, N: N)
        expectDoubled(once, dz, "dlogits")
    }

    /// DBRL computed log π(a|s) as a B×B matrix (every row's log-softmax at every sample's action)
    /// where B values were meant. With B == N that mistake keeps every shape right, so check the
    /// values: sample b's log-probability comes from row b at action a_b, and from nothing else.
    @Test func softmaxLogProbIsOnePerSampleFromItsOwnRowAndAction() {
        var rng = SplitMix64(seed: 109)
        let B = 4, N = 4
        let z = randoms(B * N, &rng, -3, 3)
        let actions: [Int32] = [2, 0, 3, 1]
        var probs = zeros(B * N)
        var logp = zeros(B + 1)
        logp[B] = 12345  // sentinel: exactly B values are written
        _ = softmax_cross_entropy_forward(probs: &probs, logp: &logp, logits: z, actions: actions, weights: nil,
                                          masked: nil, M: 0, B: B, N: N)
        #expect(logp[B] == 12345)
        let ref = refLogSoftmax(z.map(Double.init), B: B, N: N)
        for b in 0..<B {
            #expect(close(Double(logp[b]), ref[b * N + Int(actions[b])]), "logp[\(b)]")
            // Not another sample's action in this row, nor this action in another row.
            for a in 0..<N where a != Int(actions[b]) {
                #expect(!close(Double(logp[b]), ref[b * N + a]), "logp[\(b)] matches action \(a)")
            }
        }
        // Changing every other row leaves sample b's log-probability bit for bit.
        for b in 0..<B {
            var z2 = z
            for i in 0..<(B * N) where i / N != b { z2[i] = rng.uniform(-5, 5) }
            var p2 = zeros(B * N), lp2 = zeros(B)
            _ = softmax_cross_entropy_forward(probs: &p2, logp: &lp2, logits: z2, actions: actions, weights: nil,
                                              masked: nil, M: 0, B: B, N: N)
            #expect(lp2[b] == logp[b], "logp[\(b)] depends on another row")
        }
    }

    // MARK: Sampled softmax

    @Test func sampledSoftmaxBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 113)
        let B = 3, K = 4, D = 4, U = 4
        // Samples 0 and 2 share their true item 0; sample 1's true item 1 was also sampled
        // (an accidental hit for row 1, an ordinary negative for rows 0 and 2); local 2 was
        // sampled twice.
        let trueLocal: [Int32] = [0, 1, 0], sampledLocal: [Int32] = [2, 1, 3, 2]
        let h = randoms(B * D, &rng), rows = randoms(U * D, &rng), bias = randoms(U, &rng, -0.5, 0.5)
        let trueQ = randoms(B, &rng, 0.05, 0.5), sampledQ = randoms(K, &rng, 0.05, 0.5)
        let w = randoms(B, &rng, 0.1, 2)
        let dloss: Float = 0.8
        let C = 1 + K
        var probs = zeros(B * C), logp = zeros(B)
        let loss = sampled_softmax_forward(probs: &probs, logp: &logp, h: h, rows: rows, bias: bias,
                                           trueLocal: trueLocal, sampledLocal: sampledLocal,
                                           trueQ: trueQ, sampledQ: sampledQ, weights: w, B: B, K: K, D: D)
        func reference(_ hv: [Double], _ rv: [Double], _ bv: [Double]) -> (logp: [Double], probs: [Double]) {
            refSampled(h: hv, rows: rv, bias: bv, trueLocal: trueLocal, sampledLocal: sampledLocal,
                       trueQ: trueQ, sampledQ: sampledQ, B: B, K: K, D: D)
        }
        func objective(_ hv: [Double], _ rv: [Double], _ bv: [Double]) -> Double {
            let lp = reference(hv, rv, bv).logp
            return (0..<B).reduce(0) { $0 - Double(dloss) * Double(w[$1]) * lp[$1] }
        }
        let hd = h.map(Double.init), rd = rows.map(Double.init), bd = bias.map(Double.init)
        let ref = reference(hd, rd, bd)
        #expect(close(Double(dloss) * loss, objective(hd, rd, bd)))
        for b in 0..<B { #expect(close(Double(logp[b]), ref.logp[b]), "logp[\(b)]") }
        for i in 0..<(B * C) { #expect(close(Double(probs[i]), ref.probs[i], rel: 1e-4, abs: 1e-6), "probs[\(i)]") }
        // The accidental hit: sample k = 1 is row 1's own item — probability 0 there only.
        #expect(probs[1 * C + 2] == 0)
        #expect(probs[0 * C + 2] > 0 && probs[2 * C + 2] > 0)

        var dh = zeros(B * D), drows = zeros(U * D), dbias = zeros(U)
        sampled_softmax_backward(dh: &dh, drows: &drows, dbias: &dbias, probs: probs, h: h, rows: rows,
                                 trueLocal: trueLocal, sampledLocal: sampledLocal, weights: w,
                                 dloss: dloss, B: B, K: K, D: D)
        expectGradient(dh, h, "dh") { objective($0, rd, bd) }
        expectGradient(drows, rows, "drows") { objective(hd, $0, bd) }
        expectGradient(dbias, bias, "dbias") { objective(hd, rd, $0) }
        let once = (dh, drows, dbias)
        sampled_softmax_backward(dh: &dh, drows: &drows, dbias: &dbias, probs: probs, h: h, rows: rows,
                                 trueLocal: trueLocal, sampledLocal: sampledLocal, weights: w,
                                 dloss: dloss, B: B, K: K, D: D)
        expectDoubled(once.0, dh, "dh")
        expectDoubled(once.1, drows, "drows")
        expectDoubled(once.2, dbias, "dbias")
    }

    /// With every item sampled once and a uniform Q, the sampled softmax is the full softmax:
    /// −log Q shifts whole rows, and the accidental hit removes the true item's second copy.
    /// Checked against dot_scores + softmax_cross_entropy, forward and backward.
    @Test func sampledSoftmaxOfTheWholeCatalogueIsTheFullSoftmax() {
        var rng = SplitMix64(seed: 127)
        let B = 3, N = 6, D = 3
        let h = randoms(B * D, &rng), E = randoms(N * D, &rng), bias = randoms(N, &rng, -0.5, 0.5)
        let actions: [Int32] = [4, 0, 4], w = randoms(B, &rng, 0.1, 2)
        let dloss: Float = 1.3

        var scores = zeros(B * N), probs = zeros(B * N), logp = zeros(B)
        dot_scores_forward(scores: &scores, A: h, E: E, bias: bias, B: B, N: N, D: D)
        let full = softmax_cross_entropy_forward(probs: &probs, logp: &logp, logits: scores, actions: actions,
                                                 weights: w, masked: nil, M: 0, B: B, N: N)
        var dscores = zeros(B * N), dA = zeros(B * D), dE = zeros(N * D), db = zeros(N)
        softmax_cross_entropy_backward(dlogits: &dscores, probs: probs, actions: actions, weights: w, dloss: dloss, B: B, N: N)
        dot_scores_backward(dA: &dA, dE: &dE, dbias: &db, dscores: dscores, A: h, E: E, B: B, N: N, D: D)

        let K = N, C = 1 + K
        let sampled = (0..<Int32(N)).map { $0 }
        let uniform = [Float](repeating: 1 / Float(N), count: max(B, K))
        var sprobs = zeros(B * C), slogp = zeros(B)
        let loss = sampled_softmax_forward(probs: &sprobs, logp: &slogp, h: h, rows: E, bias: bias,
                                           trueLocal: actions, sampledLocal: sampled, trueQ: uniform, sampledQ: uniform,
                                           weights: w, B: B, K: K, D: D)
        var dh = zeros(B * D), drows = zeros(N * D), dbias = zeros(N)
        sampled_softmax_backward(dh: &dh, drows: &drows, dbias: &dbias, probs: sprobs, h: h, rows: E,
                                 trueLocal: actions, sampledLocal: sampled, weights: w, dloss: dloss, B: B, K: K, D: D)

        #expect(close(loss, full, rel: 1e-4, abs: 1e-5))
        for b in 0..<B {
            let a = Int(actions[b])
            #expect(close(Double(slogp[b]), Double(logp[b]), rel: 1e-4, abs: 1e-5), "logp[\(b)]")
            #expect(close(Double(sprobs[b * C]), Double(probs[b * N + a]), rel: 1e-4, abs: 1e-6))
            for j in 0..<N {
                let expected = j == a ? 0 : probs[b * N + j]
                #expect(close(Double(sprobs[b * C + 1 + j]), Double(expected), rel: 1e-4, abs: 1e-6), "probs[\(b),\(j)]")
            }
        }
        for i in 0..<(B * D) { #expect(close(Double(dh[i]), Double(dA[i]), rel: 1e-4, abs: 1e-5), "dh[\(i)]") }
        for i in 0..<(N * D) { #expect(close(Double(drows[i]), Double(dE[i]), rel: 1e-4, abs: 1e-5), "drows[\(i)]") }
        for i in 0..<N { #expect(close(Double(dbias[i]), Double(db[i]), rel: 1e-4, abs: 1e-5), "dbias[\(i)]") }
    }

    // MARK: Gather

    @Test func stateGatherBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 131)
        let B = 3, H = 4, D = 3, userCount = 4, itemCount = 7
        let users: [Int32] = [0, 2, 3]  // 0 is the user OOV id: a real row
        // Item 0 pads; item 6 repeats and, with user 3, has no row yet (nil: a zero row that the
        // gradient may create, so the tables hold zeros there).
        let history: [Int32] = [5, 2, 0, 0,
                                3, 6, 6, 1,
                                0, 0, 0, 4]
        let nilUser: Int32 = 3, nilItem: Int32 = 6
        var userTable = randoms(userCount * D, &rng), itemTable = randoms(itemCount * D, &rng)
        for d in 0..<D { userTable[Int(nilUser) * D + d] = 0; itemTable[Int(nilItem) * D + d] = 0 }
        // Row 0 of the item table is non-zero: padding must not read it.
        #expect(itemTable[0..<D].contains { $0 != 0 })
        let r = randoms(B * (H + 1) * D, &rng)

        func reference(_ u: [Double], _ it: [Double]) -> [Double] {
            var out = [Double]()
            for b in 0..<B {
                out += (0..<D).map { u[Int(users[b]) * D + $0] }
                for i in 0..<H {
                    let id = Int(history[b * H + i])
                    out += (0..<D).map { id == 0 ? 0 : it[id * D + $0] }
                }
            }
            return out
        }
        var out = [Float](repeating: .nan, count: B * (H + 1) * D)
        userTable.withUnsafeBufferPointer { ut in itemTable.withUnsafeBufferPointer { itb in
            state_gather_forward(out: &out, users: users, history: history, B: B, H: H, D: D,
                                 userRow: { $0 == nilUser ? nil : ut.baseAddress! + Int($0) * D },
                                 itemRow: { $0 == nilItem ? nil : itb.baseAddress! + Int($0) * D })
        } }
        let ref = reference(userTable.map(Double.init), itemTable.map(Double.init))
        for i in out.indices { #expect(Double(out[i]) == ref[i], "out[\(i)]") }

        // Ids double as local indices; padding's local index points at row 0, which must stay zero.
        var du = zeros(userCount * D), di = zeros(itemCount * D)
        state_gather_backward(duserRows: &du, ditemRows: &di, dout: r, userLocal: users, itemLocal: history,
                              history: history, B: B, H: H, D: D)
        let ud = userTable.map(Double.init), id = itemTable.map(Double.init)
        expectGradient(du, userTable, "duser") { zip(reference($0, id), r).reduce(0) { $0 + $1.0 * Double($1.1) } }
        expectGradient(di, itemTable, "ditem") { zip(reference(ud, $0), r).reduce(0) { $0 + $1.0 * Double($1.1) } }
        #expect(di[0..<D].allSatisfy { $0 == 0 }, "padding received a gradient")
        #expect(di[Int(nilItem) * D..<(Int(nilItem) + 1) * D].contains { $0 != 0 }, "a nil row gets its gradient")
        let once = (du, di)
        state_gather_backward(duserRows: &du, ditemRows: &di, dout: r, userLocal: users, itemLocal: history,
                              history: history, B: B, H: H, D: D)
        expectDoubled(once.0, du, "duser")
        expectDoubled(once.1, di, "ditem")
    }

    @Test func concat2BackwardSplitsTheGradient() {
        var rng = SplitMix64(seed: 137)
        let B = 3, D1 = 4, D2 = 2, W = D1 + D2
        let x = randoms(B * D1, &rng), y = randoms(B * D2, &rng), r = randoms(B * W, &rng)
        var out = zeros(B * W)
        concat2_forward(out: &out, x: x, y: y, B: B, D1: D1, D2: D2)
        for b in 0..<B {
            #expect(Array(out[(b * W)..<(b * W + D1)]) == Array(x[(b * D1)..<((b + 1) * D1)]))
            #expect(Array(out[(b * W + D1)..<((b + 1) * W)]) == Array(y[(b * D2)..<((b + 1) * D2)]))
        }
        func objective(_ xv: [Double], _ yv: [Double]) -> Double {
            var L = 0.0
            for b in 0..<B {
                for d in 0..<D1 { L += xv[b * D1 + d] * Double(r[b * W + d]) }
                for d in 0..<D2 { L += yv[b * D2 + d] * Double(r[b * W + D1 + d]) }
            }
            return L
        }
        var dx = zeros(B * D1), dy = zeros(B * D2)
        concat2_backward(dx: &dx, dy: &dy, dout: r, B: B, D1: D1, D2: D2)
        expectGradient(dx, x, "dx") { objective($0, y.map(Double.init)) }
        expectGradient(dy, y, "dy") { objective(x.map(Double.init), $0) }
        let once = (dx, dy)
        concat2_backward(dx: &dx, dy: &dy, dout: r, B: B, D1: D1, D2: D2)
        expectDoubled(once.0, dx, "dx")
        expectDoubled(once.1, dy, "dy")
        // Only the action's half (DDPG's actor step).
        var dyOnly = zeros(B * D2)
        concat2_backward(dx: nil, dy: &dyOnly, dout: r, B: B, D1: D1, D2: D2)
        #expect(dyOnly == once.1)
    }

    @Test func recentItemsAddTheLastItemsRowsAndSendBackTheirGradient() {
        var rng = SplitMix64(seed: 139)
        // Ids 0 (padding), 1 (OOV) and 7 (≥ N: no row yet) are skipped; 4 repeats within a state.
        let B = 3, H = 5, R = 3, D = 4, N = 7, w: Float = 1.5
        let history: [Int32] = [2, 3, 0, 4, 5,
                                0, 0, 1, 6, 7,
                                4, 6, 4, 2, 3]
        let E = randoms(8 * D, &rng), h0 = randoms(B * D, &rng), r = randoms(B * D, &rng)
        func reference(_ e: [Double]) -> [Double] {
            var out = h0.map(Double.init)
            for b in 0..<B {
                for i in (H - R)..<H {
                    let id = Int(history[b * H + i])
                    if id < 2 || id >= N { continue }
                    for d in 0..<D { out[b * D + d] += Double(w) * e[id * D + d] }
                }
            }
            return out
        }
        var h = h0
        recent_items_forward(h: &h, E: E, history: history, B: B, H: H, R: R, D: D, N: N, weight: w)
        let ref = reference(E.map(Double.init))
        for i in h.indices { #expect(abs(Double(h[i]) - ref[i]) < 1e-5, "h[\(i)]") }
        var dE = zeros(8 * D)
        recent_items_backward(dE: &dE, dh: r, history: history, B: B, H: H, R: R, D: D, N: N, weight: w)
        expectGradient(dE, E, "dE") { zip(reference($0), r).reduce(0) { $0 + $1.0 * Double($1.1) } }
        for skipped in [0, 1, 7] { #expect(dE[(skipped * D)..<((skipped + 1) * D)].allSatisfy { $0 == 0 }, "row \(skipped) got a gradient") }
        let once = dE
        recent_items_backward(dE: &dE, dh: r, history: history, B: B, H: H, R: R, D: D, N: N, weight: w)
        expectDoubled(once, dE, "dE")
        // R = 0: nothing moves.
        var unchanged = h0
        recent_items_forward(h: &unchanged, E: E, history: history, B: B, H: H, R: 0, D: D, N: N, weight: w)
        #expect(unchanged == h0)
    }

    // MARK: Dot scores

    @Test(arguments: [false, true])
    func dotScoresBackwardMatchesFiniteDifferences(_ withBias: Bool) {
        var rng = SplitMix64(seed: 139)
        let B = 3, N = 5, D = 4
        let A = randoms(B * D, &rng), E = randoms(N * D, &rng), bias = randoms(N, &rng), r = randoms(B * N, &rng)
        func objective(_ a: [Double], _ e: [Double], _ bb: [Double]) -> Double {
            var L = 0.0
            for b in 0..<B { for n in 0..<N {
                var s = withBias ? bb[n] : 0
                for d in 0..<D { s += a[b * D + d] * e[n * D + d] }
                L += s * Double(r[b * N + n])
            } }
            return L
        }
        var scores = [Float](repeating: .nan, count: B * N)  // beta 0 must overwrite, not add
        dot_scores_forward(scores: &scores, A: A, E: E, bias: withBias ? bias : nil, B: B, N: N, D: D)
        for b in 0..<B { for n in 0..<N {
            var s = withBias ? Double(bias[n]) : 0
            for d in 0..<D { s += Double(A[b * D + d]) * Double(E[n * D + d]) }
            #expect(close(Double(scores[b * N + n]), s, rel: 1e-5, abs: 1e-6), "scores[\(b),\(n)]")
        } }
        let ad = A.map(Double.init), ed = E.map(Double.init), bd = bias.map(Double.init)
        var dA = zeros(B * D), dE = zeros(N * D), db = zeros(N)
        func backward() {
            db.withUnsafeMutableBufferPointer { dbp in
                dot_scores_backward(dA: &dA, dE: &dE, dbias: withBias ? dbp.baseAddress : nil, dscores: r,
                                    A: A, E: E, B: B, N: N, D: D)
            }
        }
        backward()
        expectGradient(dA, A, "dA") { objective($0, ed, bd) }
        expectGradient(dE, E, "dE") { objective(ad, $0, bd) }
        if withBias { expectGradient(db, bias, "dbias") { objective(ad, ed, $0) } }
        let once = (dA, dE, db)
        backward()
        expectDoubled(once.0, dA, "dA")
        expectDoubled(once.1, dE, "dE")
        if withBias { expectDoubled(once.2, db, "dbias") }
    }

    // MARK: VAE (BCQ)

    @Test func reparameterizeBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 149)
        let N = 10
        let mu = randoms(N, &rng)
        var logStd = randoms(N, &rng, -3, 2)
        logStd[3] = -6; logStd[7] = 16  // outside the clamp: no gradient
        let eps = (0..<N).map { _ in Float(rng.normal()) }, r = randoms(N, &rng)
        func clampD(_ s: Double) -> Double { min(max(s, -4), 15) }
        func objective(_ m: [Double], _ s: [Double]) -> Double {
            (0..<N).reduce(0) { $0 + (m[$1] + exp(clampD(s[$1])) * Double(eps[$1])) * Double(r[$1]) }
        }
        var z = zeros(N)
        reparameterize_forward(z: &z, mu: mu, logStd: logStd, eps: eps, N: N)
        for i in 0..<N {
            #expect(close(Double(z[i]), Double(mu[i]) + exp(clampD(Double(logStd[i]))) * Double(eps[i]), rel: 1e-5, abs: 1e-6), "z[\(i)]")
        }
        var dmu = zeros(N), ds = zeros(N)
        reparameterize_backward(dmu: &dmu, dlogStd: &ds, dz: r, logStd: logStd, eps: eps, N: N)
        expectGradient(dmu, mu, "dmu") { objective($0, logStd.map(Double.init)) }
        expectGradient(ds, logStd, "dlogStd") { objective(mu.map(Double.init), $0) }
        #expect(ds[3] == 0 && ds[7] == 0)
        let once = (dmu, ds)
        reparameterize_backward(dmu: &dmu, dlogStd: &ds, dz: r, logStd: logStd, eps: eps, N: N)
        expectDoubled(once.0, dmu, "dmu")
        expectDoubled(once.1, ds, "dlogStd")
    }

    @Test func vaeKLBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 151)
        let B = 3, L = 4
        let mu = randoms(B * L, &rng, -2, 2)
        // An upper bound of 1.5 rather than BCQ's 15: above 15 the KL is ~exp(30), far too large
        // for a finite difference in Double to resolve (vaeClampBoundaries checks 15 itself).
        let lo: Float = -4, hi: Float = 1.5
        var logStd = randoms(B * L, &rng, -3, 1.4)
        logStd[1] = -5; logStd[10] = 2  // outside the clamp: no gradient
        let dloss: Float = 0.6
        func perSample(_ m: [Double], _ s: [Double]) -> [Double] {
            (0..<B).map { b in
                -0.5 * (0..<L).reduce(0.0) { acc, l in
                    let c = min(max(s[b * L + l], Double(lo)), Double(hi)), mm = m[b * L + l]
                    return acc + 1 + 2 * c - mm * mm - exp(2 * c)
                }
            }
        }
        func objective(_ m: [Double], _ s: [Double]) -> Double { Double(dloss) * perSample(m, s).reduce(0, +) }
        var kl = zeros(B)
        let total = vae_kl_forward(kl: &kl, mu: mu, logStd: logStd, B: B, L: L, lo: lo, hi: hi)
        let ref = perSample(mu.map(Double.init), logStd.map(Double.init))
        for b in 0..<B { #expect(close(Double(kl[b]), ref[b], rel: 1e-5, abs: 1e-5), "kl[\(b)]") }
        #expect(close(total, ref.reduce(0, +), rel: 1e-5, abs: 1e-5))
        var dmu = zeros(B * L), ds = zeros(B * L)
        vae_kl_backward(dmu: &dmu, dlogStd: &ds, mu: mu, logStd: logStd, dloss: dloss, B: B, L: L, lo: lo, hi: hi)
        expectGradient(dmu, mu, "dmu") { objective($0, logStd.map(Double.init)) }
        expectGradient(ds, logStd, "dlogStd") { objective(mu.map(Double.init), $0) }
        #expect(ds[1] == 0 && ds[10] == 0)
        let once = (dmu, ds)
        vae_kl_backward(dmu: &dmu, dlogStd: &ds, mu: mu, logStd: logStd, dloss: dloss, B: B, L: L, lo: lo, hi: hi)
        expectDoubled(once.0, dmu, "dmu")
        expectDoubled(once.1, ds, "dlogStd")
    }

    /// At the clamp's edges: just outside, log σ is replaced by the bound and gets no gradient;
    /// at the bound and just inside it passes (torch.clamp's convention).
    @Test func vaeClampBoundaries() {
        let logStd: [Float] = [-4.001, -4, -3.999, 14.999, 15, 15.001]
        let inside: [Bool] = [false, true, true, true, true, false]
        let N = logStd.count
        let mu = zeros(N), eps = [Float](repeating: 0.5, count: N), dz = [Float](repeating: 1, count: N)
        var z = zeros(N)
        reparameterize_forward(z: &z, mu: mu, logStd: logStd, eps: eps, N: N)
        #expect(z[0] == 0.5 * exp(Float(-4)) && z[5] == 0.5 * exp(Float(15)), "clamped σ used forward")
        var dmu = zeros(N), ds = zeros(N)
        reparameterize_backward(dmu: &dmu, dlogStd: &ds, dz: dz, logStd: logStd, eps: eps, N: N)
        var klGrad = zeros(N), dmuKL = zeros(N), kl = zeros(N)
        _ = vae_kl_forward(kl: &kl, mu: mu, logStd: logStd, B: N, L: 1)
        vae_kl_backward(dmu: &dmuKL, dlogStd: &klGrad, mu: mu, logStd: logStd, dloss: 1, B: N, L: 1)
        for i in 0..<N {
            let s = min(max(Double(logStd[i]), -4), 15)
            let expectR = inside[i] ? 0.5 * exp(s) : 0, expectKL = inside[i] ? exp(2 * s) - 1 : 0
            #expect(close(Double(ds[i]), expectR, rel: 1e-5, abs: 0), "reparameterize dlogStd[\(i)] = \(ds[i])")
            #expect(close(Double(klGrad[i]), expectKL, rel: 1e-5, abs: 0), "kl dlogStd[\(i)] = \(klGrad[i])")
            #expect(close(Double(kl[i]), -0.5 * (1 + 2 * s - exp(2 * s)), rel: 1e-5, abs: 1e-6), "kl[\(i)]")
        }
        #expect(dmu == dz)
    }

    @Test func vaeReconstructionBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 157)
        let N = 8
        let xhat = randoms(N, &rng), x = randoms(N, &rng)
        let dloss: Float = 1.7
        let f: ([Double]) -> Double = { v in Double(dloss) * (0..<N).reduce(0) { $0 + 0.5 * pow(v[$1] - Double(x[$1]), 2) } }
        #expect(close(Double(dloss) * vae_reconstruction_forward(xhat: xhat, x: x, N: N), f(xhat.map(Double.init))))
        var d = zeros(N)
        vae_reconstruction_backward(dxhat: &d, xhat: xhat, x: x, dloss: dloss, N: N)
        expectGradient(d, xhat, "dxhat", f)
        let once = d
        vae_reconstruction_backward(dxhat: &d, xhat: xhat, x: x, dloss: dloss, N: N)
        expectDoubled(once, d, "dxhat")
    }

    // MARK: Critic loss and target networks

    @Test func weightedMSEBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 163)
        let B = 4
        let q = randoms(B, &rng, -2, 2), y = randoms(B, &rng, -2, 2), w = randoms(B, &rng, 0.1, 2)
        let dloss: Float = 0.5
        let f: ([Double]) -> Double = { v in
            Double(dloss) * (0..<B).reduce(0) { $0 + Double(w[$1]) * pow(v[$1] - Double(y[$1]), 2) }
        }
        #expect(close(Double(dloss) * weighted_mse_forward(q: q, y: y, weights: w, B: B), f(q.map(Double.init))))
        var dq = zeros(B)
        weighted_mse_backward(dq: &dq, q: q, y: y, weights: w, dloss: dloss, B: B)
        expectGradient(dq, q, "dq", f)
        let once = dq
        weighted_mse_backward(dq: &dq, q: q, y: y, weights: w, dloss: dloss, B: B)
        expectDoubled(once, dq, "dq")
        // nil weights are weights of 1.
        let ones = [Float](repeating: 1, count: B)
        #expect(weighted_mse_forward(q: q, y: y, weights: nil, B: B) == weighted_mse_forward(q: q, y: y, weights: ones, B: B))
        var dn = zeros(B), d1 = zeros(B)
        weighted_mse_backward(dq: &dn, q: q, y: y, weights: nil, dloss: dloss, B: B)
        weighted_mse_backward(dq: &d1, q: q, y: y, weights: ones, dloss: dloss, B: B)
        #expect(dn == d1)
    }

    @Test func softUpdateMatchesPlainLoop() {
        var rng = SplitMix64(seed: 167)
        let count = 20
        let online = randoms(count, &rng), start = randoms(count, &rng)
        for tau: Float in [0.005, 0.3] {
            var target = start
            soft_update(target: &target, online: online, tau: tau, count: count)
            for i in 0..<count {
                let expected = Double(tau) * Double(online[i]) + (1 - Double(tau)) * Double(start[i])
                #expect(close(Double(target[i]), expected, rel: 1e-6, abs: 1e-7), "τ=\(tau) target[\(i)]")
            }
        }
        var copy = start
        soft_update(target: &copy, online: online, tau: 1, count: count)
        #expect(copy == online)
        var kept = start
        soft_update(target: &kept, online: online, tau: 0, count: count)
        #expect(kept == start)
    }
}
