import Testing
import Kernels
import StreamRecNumerics

// The pieces the actor-critic models build concatenated-input layers from: a layer on [x | y]
// computed as x·W_x + b, then += y·W_y (`linear_accumulate_forward`), the shared part repeated for
// n candidates (`repeat_rows_forward`), and `linear_backward` with any of its gradients left out.
// Each forward against a Double reference, each backward against finite differences.

@Suite struct SplitLinearTests {
    @Test(arguments: [1, 5])
    func splitLayerEqualsTheConcatenatedLayerAndItsBackwardMatchesFiniteDifferences(_ O: Int) {
        var rng = SplitMix64(seed: 71)
        let B = 4, I1 = 5, I2 = 3, I = I1 + I2
        let x = randoms(B * I1, &rng), y = randoms(B * I2, &rng), W = randoms(I * O, &rng), bias = randoms(O, &rng)
        let r = randoms(B * O, &rng)
        // Reference: the layer on the concatenation [x | y].
        func objective(_ xd: [Double], _ yd: [Double], _ w: [Double]) -> Double {
            var L = 0.0
            for b in 0..<B { for o in 0..<O {
                var z = Double(bias[o])
                for i in 0..<I1 { z += xd[b * I1 + i] * w[i * O + o] }
                for i in 0..<I2 { z += yd[b * I2 + i] * w[(I1 + i) * O + o] }
                L += Double(r[b * O + o]) * z
            } }
            return L
        }
        var out = [Float](repeating: 0, count: B * O)
        W.withUnsafeBufferPointer { w in
            linear_forward(out: &out, inp: x, weight: w.baseAddress!, bias: bias, B: B, I: I1, O: O)
            linear_accumulate_forward(out: &out, inp: y, weight: w.baseAddress! + I1 * O, B: B, I: I2, O: O)
        }
        let xd = x.map(Double.init), yd = y.map(Double.init), wd = W.map(Double.init)
        #expect(close(zip(out, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }, objective(xd, yd, wd)))

        // Backward of the y half alone: no bias, and dinp wanted.
        var dy = [Float](repeating: 0, count: B * I2), dW = [Float](repeating: 0, count: I * O)
        W.withUnsafeBufferPointer { w in
            dW.withUnsafeMutableBufferPointer { dw in
                linear_backward(dinp: &dy, dweight: dw.baseAddress! + I1 * O, dbias: nil, dout: r, inp: y,
                                weight: w.baseAddress! + I1 * O, B: B, I: I2, O: O)
            }
        }
        for i in 0..<(B * I2) { #expect(close(Double(dy[i]), numericGrad(yd, i) { objective(xd, $0, wd) }), "dy[\(i)]") }
        for i in 0..<(I * O) {
            let want = i < I1 * O ? 0 : numericGrad(wd, i) { objective(xd, yd, $0) }
            #expect(close(Double(dW[i]), want), "dW[\(i)]")
        }
        // dinp only (an actor's loss through a critic it does not train): the same dinp as the full call.
        var dyOnly = [Float](repeating: 0, count: B * I2)
        W.withUnsafeBufferPointer { w in
            linear_backward(dinp: &dyOnly, dweight: nil, dbias: nil, dout: r, inp: y, weight: w.baseAddress! + I1 * O, B: B, I: I2, O: O)
        }
        #expect(dyOnly == dy)
        // Accumulates: a second call doubles.
        W.withUnsafeBufferPointer { w in
            linear_backward(dinp: &dyOnly, dweight: nil, dbias: nil, dout: r, inp: y, weight: w.baseAddress! + I1 * O, B: B, I: I2, O: O)
        }
        for i in dy.indices { #expect(close(Double(dyOnly[i]), 2 * Double(dy[i]), rel: 1e-5, abs: 1e-6)) }
    }

    @Test func linearAccumulateForwardOnOneOrTwoRows() {
        var rng = SplitMix64(seed: 72)
        for B in [1, 2] {
            let I = 4, O = 3
            let x = randoms(B * I, &rng), W = randoms(I * O, &rng), start = randoms(B * O, &rng)
            var out = start
            linear_accumulate_forward(out: &out, inp: x, weight: W, B: B, I: I, O: O)
            for b in 0..<B { for o in 0..<O {
                let want = Double(start[b * O + o]) + (0..<I).reduce(0.0) { $0 + Double(x[b * I + $1]) * Double(W[$1 * O + o]) }
                #expect(close(Double(out[b * O + o]), want, rel: 1e-6, abs: 1e-6))
            } }
        }
    }

    @Test func repeatRowsForwardAndBackward() {
        var rng = SplitMix64(seed: 73)
        let n = 3, B = 2, O = 4
        let base = randoms(B * O, &rng), r = randoms(n * B * O, &rng)
        var out = [Float](repeating: 0, count: n * B * O)
        repeat_rows_forward(out: &out, base: base, n: n, B: B, O: O)
        for i in 0..<n { #expect(Array(out[(i * B * O)..<((i + 1) * B * O)]) == base) }
        func objective(_ bd: [Double]) -> Double {
            (0..<(n * B * O)).reduce(0.0) { $0 + Double(r[$1]) * bd[$1 % (B * O)] }
        }
        var dbase = [Float](repeating: 0, count: B * O)
        repeat_rows_backward(dbase: &dbase, dout: r, n: n, B: B, O: O)
        let bd = base.map(Double.init)
        for i in 0..<(B * O) { #expect(close(Double(dbase[i]), numericGrad(bd, i, objective)), "dbase[\(i)]") }
    }
}

