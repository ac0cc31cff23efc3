import Foundation
import Logging
import Testing
import Checkpoint
import Features
import Models
@testable import Serving

/// What a hot reload loads and frees: an inference-only model read once and verified, reused
/// dictionaries only when the statistics file is byte-identical, and the old version's memory
/// given back off the request path.
@Suite("Hot reload internals") struct ReloadTests {
    private func watcher(_ fx: TinyModelFixture, _ slot: ModelSlot) -> CheckpointWatcher {
        CheckpointWatcher(root: fx.root, slot: slot, metrics: ServingMetrics(), workspaceRows: 8, logger: Logger(label: "serve", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    private func parse(_ rows: [String]) throws -> [CriteoRow] {
        let parser = CriteoParser(labels: .optional)
        return try rows.map { try parser.parse($0) }
    }

    @Test("byte-identical statistics reuse the previous dictionaries; changed ones are read again")
    func dictionaryReuse() async throws {
        let fx = try TinyModelFixture()
        let slot = ModelSlot(), w = watcher(fx, slot)
        try fx.write(step: 1)
        #expect(await w.pollOnce() == .loaded(version: "step-000000000001"))
        #expect(slot.wideDeep?.reusedDictionary == false)  // nothing to reuse yet
        let firstDigest = slot.wideDeep?.statsDigest
        #expect(firstDigest?.count == 64)

        let v2 = try fx.write(step: 2)
        #expect(await w.pollOnce() == .loaded(version: "step-000000000002"))
        #expect(slot.wideDeep?.reusedDictionary == true)
        #expect(slot.wideDeep?.statsDigest == firstDigest)
        let rows = Array(fx.rows.prefix(20))
        let expected2 = try fx.directPredictions(checkpoint: v2, rows: rows)
        for (p, q) in zip(slot.wideDeep!.predict(rows: try parse(rows)), expected2) { #expect(abs(p - q) <= 1e-6) }

        // A different dictionary (another frequency threshold) must not be taken from v2.
        let other = try fx.otherStats(minFrequency: 3)
        #expect(other.minFrequency == 3 && fx.stats.minFrequency == 1)
        let v3 = try fx.write(step: 3, stats: other)
        #expect(await w.pollOnce() == .loaded(version: "step-000000000003"))
        #expect(slot.wideDeep?.reusedDictionary == false)
        #expect(slot.wideDeep?.statsDigest != firstDigest)
        #expect(slot.wideDeep?.encoder.stats.minFrequency == 3)
        let expected3 = try fx.directPredictions(checkpoint: v3, rows: rows)
        for (p, q) in zip(slot.wideDeep!.predict(rows: try parse(rows)), expected3) { #expect(abs(p - q) <= 1e-6) }
    }

    @Test("the served model has no optimizer state; a flipped byte in an optimizer tensor is still refused")
    func optimizerBytesStillVerified() async throws {
        let fx = try TinyModelFixture()
        let slot = ModelSlot(), w = watcher(fx, slot)
        try fx.write(step: 1)
        #expect(await w.pollOnce() == .loaded(version: "step-000000000001"))
        let served = try #require(slot.wideDeep?.model)
        #expect(!served.trainable && served.adamM.count == 0 && served.adamV.count == 0)
        #expect(served.deepRows.stateCount == 0 && served.sparseRowCount == fx.model.sparseRowCount)

        // The loader never copies optim.* tensors, but it must still hash them.
        let v2 = try fx.write(step: 2)
        let url = v2.appendingPathComponent(CheckpointStore.modelFileName)
        let file = try SafeTensorsFile(url: url)
        let optim = try #require(file.tensors.first { $0.name.hasPrefix("optim.") && $0.byteRange.count >= 4 })
        var bytes = try Data(contentsOf: url)
        bytes[file.dataOffset + optim.byteRange.lowerBound + 1] ^= 0x40
        try bytes.write(to: url)
        guard case .rejected(_, let reason) = await w.pollOnce() else {
            Issue.record("a checkpoint with a corrupted optimizer tensor was loaded"); return
        }
        #expect(reason.contains("sha256"))
        #expect(slot.current?.step == 1)
    }

    @Test("a truncated model file is refused before anything is swapped")
    func truncatedRefused() async throws {
        let fx = try TinyModelFixture()
        let slot = ModelSlot(), w = watcher(fx, slot)
        try fx.write(step: 1)
        _ = await w.pollOnce()
        let v2 = try fx.write(step: 2)
        let handle = try FileHandle(forWritingTo: v2.appendingPathComponent(CheckpointStore.modelFileName))
        try handle.truncate(atOffset: 100)
        try handle.close()
        guard case .rejected(_, let reason) = await w.pollOnce() else { Issue.record("truncated checkpoint loaded"); return }
        #expect(reason.contains("size is 100 bytes"))
        #expect(slot.current?.step == 1)
    }

    @Test("a replaced version's model is freed on the background release thread")
    func releasedOffTheRequestPath() async throws {
        let fx = try TinyModelFixture()
        let slot = ModelSlot(), w = watcher(fx, slot)
        try fx.write(step: 1)
        _ = await w.pollOnce()
        weak let oldModel = slot.wideDeep?.model
        weak let oldVersion = slot.current
        #expect(oldModel != nil)
        let before = BackgroundRelease.completed
        try fx.write(step: 2)
        #expect(await w.pollOnce() == .loaded(version: "step-000000000002"))
        #expect(oldVersion == nil)  // nothing holds the version any more: freed at once
        #expect(await eventually(30) { oldModel == nil })  // its model, by the release thread
        let after = BackgroundRelease.completed
        #expect(after.released > before.released)
        // Every release so far (other tests run in parallel) happened off the dropping thread.
        #expect(after.offCallerThread == after.released)
        #expect(slot.wideDeep?.model.sparseRowCount == fx.model.sparseRowCount)
    }
}
