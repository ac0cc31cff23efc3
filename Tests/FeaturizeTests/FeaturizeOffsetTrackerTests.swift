import Featurize
import Testing

@Suite("OffsetTracker state machine")
struct FeaturizeOffsetTrackerTests {
    @Test("retention gap: next 100, low watermark 150 → 50 lost, continue at 150")
    func retentionGap() {
        var t = OffsetTracker(next: 100)
        #expect(t.retention(lowWatermark: 150) == 50)
        #expect(t.next == 150)
        #expect(t.classify(150) == .inOrder)
        #expect(t.retention(lowWatermark: 120) == 0)   // low below next: nothing lost
        #expect(t.next == 150)
    }

    @Test("in order, duplicates, jumps, rewind")
    func steps() {
        var t = OffsetTracker(next: 0)
        #expect(t.classify(0) == .inOrder)
        t.consume(0)
        #expect(t.classify(0) == .duplicate)
        #expect(t.classify(5) == .jump(missing: 4))
        t.skip(to: 5)
        t.consume(5)
        #expect(t.next == 6)
        t.rewind(to: 2)
        #expect(t.classify(2) == .inOrder && t.classify(1) == .duplicate)
    }
}
