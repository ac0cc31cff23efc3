import Testing
import Foundation
@testable import Models
import StreamRecNumerics
import Features

// DDPG and BCQ beyond `full_softmax_items`, whole steps: the behaviour-cloning softmax over the
// step's candidates moves exactly the candidates' rows of the item table (lazy row-wise Adam),
// and it learns. The gradients themselves are checked against finite differences and split
// batches in DDPGModelTests and BCQModelTests (`sampled: true`).

@Suite struct ActorCriticSampledSoftmaxTests {
    /// One family's step on a model with the sampled softmax at 121 item ids (16 draws a step).
    struct Runner {
        let step: (TransitionBatch) -> (bc: Double, ndcgCount: Int)
        let params: () -> [Float]
        /// Offsets of the item table's weight rows and biases.
        let itemTable: Int, itemBias: Int, dim: Int
        let drawn: () -> [Int32]
        let sampled: () -> Bool
        let digest: () -> UInt64
    }

    func runner(_ kind: String) -> Runner {
        if kind == "ddpg" {
            var c = tinyDDPGConfig()
            c.fullSoftmaxItems = 20; c.sampledItems = 16; c.learningRate = 1e-2
            let m = DDPGModel(config: c)
            m.reserveItems(through: 120)
            let gc = m.makeCriticGradients(), ga = m.makeActorGradients()
            return Runner(step: { let l = m.trainStep($0, critic: gc, actor: ga); return (l.bcLossSum, l.ndcgCount) },
                          params: { m.params.toArray() }, itemTable: m.layout.entry("action.items.weight")!.offset,
                          itemBias: m.layout.entry("action.items.bias")!.offset,
                          dim: c.embeddingSize, drawn: { m.lastSampledItems }, sampled: { m.usesSampledSoftmax },
                          digest: { m.parameterDigest() })
        }
        var c = tinyBCQConfig()
        c.fullSoftmaxItems = 20; c.sampledItems = 16; c.learningRate = 1e-2
        let m = BCQModel(config: c)
        m.reserveItems(through: 120)
        let gc = m.makeCriticGradients(), ga = m.makeActorGradients()
        return Runner(step: { let l = m.trainStep($0, critic: gc, actor: ga); return (l.bcLossSum, l.ndcgCount) },
                      params: { m.params.toArray() }, itemTable: m.layout.entry("action.items.weight")!.offset,
                          itemBias: m.layout.entry("action.items.bias")!.offset,
                      dim: c.embeddingSize, drawn: { m.lastSampledItems }, sampled: { m.usesSampledSoftmax },
                      digest: { m.parameterDigest() })
    }

    @Test("sampled softmax (DDPG, BCQ): a step moves exactly the candidates' item rows; the BC loss on a batch falls over repeated steps, deterministically",
          arguments: ["ddpg", "bcq"])
    func sampledStepsLearn(_ kind: String) {
        let batch = tinyActorCriticBatch(32, seed: 13, items: 2...120)
        func run() -> (first: Double, last: Double, digest: UInt64) {
            let r = runner(kind)
            #expect(r.sampled())
            let before = r.params()
            let first = r.step(batch)
            let after = r.params(), D = r.dim
            #expect(first.ndcgCount == 32 * 17 / 121, "B·C/N rows of progressive NDCG")
            let touched = Set((r.drawn() + batch.actions).map(Int.init))
            // A row's weights may keep still when the actions it met are 0 (a dead ReLU layer
            // gives μ = tanh(b2) = 0 at the start); its bias moves whenever it is a candidate.
            for j in 0..<121 {
                let moved = (0..<D).contains { after[r.itemTable + j * D + $0] != before[r.itemTable + j * D + $0] }
                #expect(moved ? touched.contains(j) : true, "item \(j)'s weights moved")
                #expect((after[r.itemBias + j] != before[r.itemBias + j]) == touched.contains(j), "item \(j)'s bias")
            }
            var last: [Double] = []
            for _ in 0..<60 { last.append(r.step(batch).bc) }
            return (first.bc, last.suffix(10).reduce(0, +) / 10, r.digest())
        }
        let x = run(), y = run()
        #expect(x.digest == y.digest)
        #expect(x.last < x.first * 0.9, "\(x.first) → \(x.last)")
    }
}
