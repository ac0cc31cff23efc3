import Testing
import Foundation
@testable import Models
import Kernels
import StreamRecNumerics

// Every layer's backward is checked against central finite differences of a Double reference
// forward, on the scalar objective L = Σ r ⊙ out for a random r (so dout = r).

func randoms(_ n: Int, _ rng: inout SplitMix64, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
    (0..<n).map { _ in rng.uniform(lo, hi) }
}

func close(_ a: Double, _ b: Double, rel: Double = 1e-3, abs tol: Double = 1e-4) -> Bool {
    Swift.abs(a - b) <= tol + rel * max(Swift.abs(a), Swift.abs(b))
}

/// Numeric derivative of f at x[i] in Double.
func numericGrad(_ x: [Double], _ i: Int, h: Double = 1e-5, _ f: ([Double]) -> Double) -> Double {
    var p = x, m = x
    p[i] += h; m[i] -= h
    return (f(p) - f(m)) / (2 * h)
}

@Suite struct LayerGradientTests {
    @Test(arguments: [1, 5])
    func linearBackwardMatchesFiniteDifferences(_ O: Int) {
        var rng = SplitMix64(seed: 11)
        let B = 4, I = 6
        let inp = randoms(B * I, &rng), W = randoms(I * O, &rng), bias = randoms(O, &rng), r = randoms(B * O, &rng)
        func objective(_ x: [Double], _ w: [Double], _ bb: [Double]) -> Double {
            var L = 0.0
            for b in 0..<B { for o in 0..<O {
                var z = bb[o]
                for i in 0..<I { z += x[b * I + i] * w[i * O + o] }
                L += Double(r[b * O + o]) * z
            } }
            return L
        }
        // Forward agrees with the reference.
        var out = [Float](repeating: 0, count: B * O)
        linear_forward(out: &out, inp: inp, weight: W, bias: bias, B: B, I: I, O: O)
        let ref = objective(inp.map(Double.init), W.map(Double.init), bias.map(Double.init))
        let got = zip(out, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(close(got, ref))

        var dinp = [Float](repeating: 0, count: B * I), dW = [Float](repeating: 0, count: I * O), db = [Float](repeating: 0, count: O)
        linear_backward(dinp: &dinp, dweight: &dW, dbias: &db, dout: r, inp: inp, weight: W, B: B, I: I, O: O)
        let xd = inp.map(Double.init), wd = W.map(Double.init), bd = bias.map(Double.init)
        for i in 0..<(B * I) {
            #expect(close(Double(dinp[i]), numericGrad(xd, i) { objective($0, wd, bd) }), "dinp[\(i)]")
        }
        for i in 0..<(I * O) {
            #expect(close(Double(dW[i]), numericGrad(wd, i) { objective(xd, $0, bd) }), "dW[\(i)]")
        }
        for i in 0..<O {
            #expect(close(Double(db[i]), numericGrad(bd, i) { objective(xd, wd, $0) }), "db[\(i)]")
        }
    }

    /// The one- and two-row path (vector × matrix) agrees with the batched sgemm path.
    @Test(arguments: [1, 2])
    func linearForwardSmallBatchesMatchSgemm(_ B: Int) {
        var rng = SplitMix64(seed: 21)
        let I = 37, O = 19
        let W = randoms(I * O, &rng), bias = randoms(O, &rng)
        let rows = randoms(4 * I, &rng)
        var batched = [Float](repeating: 0, count: 4 * O)
        linear_forward(out: &batched, inp: rows, weight: W, bias: bias, B: 4, I: I, O: O)   // sgemm path
        var small = [Float](repeating: 0, count: B * O)
        linear_forward(out: &small, inp: Array(rows[0..<(B * I)]), weight: W, bias: bias, B: B, I: I, O: O)
        for i in 0..<(B * O) { #expect(abs(small[i] - batched[i]) < 1e-4, "out[\(i)]") }
    }

    @Test func linearBackwardAccumulates() {
        var rng = SplitMix64(seed: 3)
        let B = 3, I = 4, O = 2
        let inp = randoms(B * I, &rng), W = randoms(I * O, &rng), r = randoms(B * O, &rng)
        var dW1 = [Float](repeating: 0, count: I * O), db1 = [Float](repeating: 0, count: O)
        linear_backward(dinp: nil, dweight: &dW1, dbias: &db1, dout: r, inp: inp, weight: W, B: B, I: I, O: O)
        var dW2 = dW1, db2 = db1
        linear_backward(dinp: nil, dweight: &dW2, dbias: &db2, dout: r, inp: inp, weight: W, B: B, I: I, O: O)
        for i in 0..<(I * O) { #expect(abs(dW2[i] - 2 * dW1[i]) < 1e-5) }
    }

    @Test func reluBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 5)
        let N = 50
        // Keep inputs away from the kink at 0 where the derivative is undefined.
        let x = randoms(N, &rng).map { $0 >= 0 ? $0 + 0.01 : $0 - 0.01 }, r = randoms(N, &rng)
        var out = [Float](repeating: 0, count: N)
        relu_forward(out: &out, inp: x, N: N)
        var dx = [Float](repeating: 0, count: N)
        relu_backward(dinp: &dx, dout: r, out: out, N: N)
        let f: ([Double]) -> Double = { v in zip(v, r).reduce(0) { $0 + max($1.0, 0) * Double($1.1) } }
        for i in 0..<N { #expect(close(Double(dx[i]), numericGrad(x.map(Double.init), i, f)), "dx[\(i)]") }
    }

    @Test func sigmoidCrossEntropyGradient() {
        var rng = SplitMix64(seed: 9)
        let B = 20
        let z = randoms(B, &rng, -4, 4), y = (0..<B).map { _ in Float(rng.next() % 2) }
        var p = [Float](repeating: 0, count: B), dz = [Float](repeating: 0, count: B)
        let total = sigmoid_cross_entropy_forward(probs: &p, logits: z, labels: y, B: B)
        sigmoid_cross_entropy_backward(dlogits: &dz, probs: p, labels: y, scale: 1, B: B)
        let f: ([Double]) -> Double = { v in
            zip(v, y).reduce(0) { acc, e in
                let (zz, yy) = (e.0, Double(e.1))
                return acc + (log(1 + exp(zz)) - yy * zz)
            }
        }
        #expect(close(total, f(z.map(Double.init))))
        for i in 0..<B { #expect(close(Double(dz[i]), numericGrad(z.map(Double.init), i, f)), "dz[\(i)]") }
    }

    @Test func embeddingBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 13)
        let B = 3, F = 4, D = 5, rows = 6
        let table = randoms(rows * D, &rng)
        let slots: [Int32] = (0..<(B * F)).map { _ in Int32(rng.next() % UInt64(rows)) }
        let w = randoms(B * F, &rng, 0, 1), r = randoms(B * F * D, &rng)
        var out = [Float](repeating: 0, count: B * F * D)
        table.withUnsafeBufferPointer { t in
            embedding_forward(out: &out, slots: slots, weights: w, B: B, F: F, D: D) { s in t.baseAddress! + Int(s) * D }
        }
        for bf in 0..<(B * F) { for d in 0..<D {
            #expect(out[bf * D + d] == table[Int(slots[bf]) * D + d] * w[bf])
        } }
        // Slots double as "local" indices here: gradients land on table rows directly.
        var drows = [Float](repeating: 0, count: rows * D)
        embedding_backward(drows: &drows, dout: r, local: slots, weights: w, B: B, F: F, D: D)
        let f: ([Double]) -> Double = { t in
            var L = 0.0
            for bf in 0..<(B * F) { for d in 0..<D { L += t[Int(slots[bf]) * D + d] * Double(w[bf]) * Double(r[bf * D + d]) } }
            return L
        }
        for i in 0..<(rows * D) { #expect(close(Double(drows[i]), numericGrad(table.map(Double.init), i, f)), "drows[\(i)]") }
    }

    @Test func wideBackwardMatchesFiniteDifferences() {
        var rng = SplitMix64(seed: 17)
        let B = 4, F = 3, rows = 5
        let values = randoms(rows, &rng)
        let slots: [Int32] = (0..<(B * F)).map { _ in Int32(rng.next() % UInt64(rows)) }
        let w = randoms(B * F, &rng, 0, 1), r = randoms(B, &rng)
        var out = [Float](repeating: 0, count: B)
        wide_forward(out: &out, slots: slots, weights: w, bias: 0.25, B: B, F: F) { values[Int($0)] }
        var dv = [Float](repeating: 0, count: rows)
        let dbias = wide_backward(dvalues: &dv, dout: r, local: slots, weights: w, B: B, F: F)
        let f: ([Double]) -> Double = { v in
            var L = 0.0
            for b in 0..<B {
                var o = 0.25
                for ff in 0..<F { o += v[Int(slots[b * F + ff])] * Double(w[b * F + ff]) }
                L += o * Double(r[b])
            }
            return L
        }
        #expect(close(Double(out.enumerated().reduce(0) { $0 + $1.element * r[$1.offset] }), f(values.map(Double.init))))
        for i in 0..<rows { #expect(close(Double(dv[i]), numericGrad(values.map(Double.init), i, f)), "dv[\(i)]") }
        #expect(close(Double(dbias), Double(r.reduce(0, +))))
    }
}
