import Features
import Testing

@Suite("FeatureBatchCodec")
struct FeatureBatchCodecTests {
    static func sample(rows: Int, categoricalWeightsOne: Bool = true, binaryLabels: Bool = true) -> SourcedFeatureBatch {
        let f = CriteoSchema.fieldCount
        var ids = [Int32](), weights = [Float](), labels = [Float]()
        for b in 0..<rows {
            for k in 0..<f {
                ids.append(Int32(52 + b * 7 + k))
                weights.append(k < 13 ? Float(b * f + k) / 1000 : (categoricalWeightsOne ? 1 : 0.5))
            }
            labels.append(binaryLabels ? Float(b % 2) : 0.25)
        }
        return SourcedFeatureBatch(batch: FeatureBatch(fieldCount: f, ids: ids, weights: weights, labels: labels),
                                   source: FeatureBatchSource(topic: "criteo-τ", partition: 7, firstOffset: 1_000_000_000_000,
                                                              lastOffset: 1_000_000_000_000 + Int64(rows) + 3,
                                                              rejectedRows: 3, producedAtMs: 1_790_000_000_123))
    }

    /// A checksum only proves the bytes are the ones written: values that would reach the
    /// kernels (negative or huge ids, non-finite weights, labels outside [0, 1]) are refused too.
    @Test("values are validated, not only the checksum", arguments: ["negative id", "huge id", "NaN weight", "infinite weight", "label 2", "NaN label"])
    func contentValidated(_ defect: String) throws {
        var x = Self.sample(rows: 3, binaryLabels: false)
        switch defect {
        case "negative id": x.batch.ids[40] = -5
        case "huge id": x.batch.ids[41] = FeatureBatchCodec.idLimit
        case "NaN weight": x.batch.weights[2] = .nan
        case "infinite weight": x.batch.weights[50] = .infinity
        case "label 2": x.batch.labels[1] = 2
        default: x.batch.labels[2] = .nan
        }
        let bytes = FeatureBatchCodec.encode(x.batch, source: x.source)
        do {
            _ = try FeatureBatchCodec.decode(bytes)
            Issue.record("a batch with a \(defect) was accepted")
        } catch {
            #expect(error.kind == .invalidContent, "\(error)")
        }
        // The same batch without the defect decodes.
        let good = Self.sample(rows: 3, binaryLabels: false)
        #expect(try FeatureBatchCodec.decode(FeatureBatchCodec.encode(good.batch, source: good.source)) == good)
    }

    @Test("CRC32C matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        // Slicing-by-8 equals the bytewise definition on odd lengths.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var c: UInt32 = 0xFFFF_FFFF
        for b in data { c ^= UInt32(b); for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 } }
        #expect(CRC32C.checksum(data) == ~c)
    }

    @Test("round trip: compact form, full-weight form, float labels, empty batch", arguments: [
        (5, true, true), (3, false, true), (4, true, false), (0, true, true),
    ])
    func roundTrip(rows: Int, compact: Bool, binary: Bool) throws {
        let x = Self.sample(rows: rows, categoricalWeightsOne: compact, binaryLabels: binary)
        let bytes = FeatureBatchCodec.encode(x.batch, source: x.source)
        let y = try FeatureBatchCodec.decode(bytes)
        #expect(y == x)
        if compact && binary && rows > 0 {
            // 13 weights + 1 label byte per row instead of 39 + 4.
            let compactSize = 50 + "criteo-τ".utf8.count + rows * (39 * 4 + 13 * 4 + 1) + 4
            #expect(bytes.count == compactSize)
        }
    }

    @Test("corrupted inputs are rejected with the right error")
    func corrupted() throws {
        let x = Self.sample(rows: 4)
        let good = FeatureBatchCodec.encode(x.batch, source: x.source)
        func kind(_ bytes: [UInt8]) -> FeatureBatchCodecError.Kind? {
            do { _ = try FeatureBatchCodec.decode(bytes); return nil } catch { return error.kind }
        }
        var bad = good; bad[0] = UInt8(ascii: "X")
        #expect(kind(bad) == .badMagic)
        #expect(kind([]) == .badMagic)
        bad = good; bad[4] = 9
        #expect(kind(bad) == .unsupportedVersion)
        do { _ = try FeatureBatchCodec.decode(bad) } catch { #expect(error.description.contains("upgrade")) }
        #expect(kind(Array(good.prefix(30))) == .truncated)
        #expect(kind(Array(good.dropLast(5))) == .lengthMismatch)
        #expect(kind(good + [0]) == .lengthMismatch)
        for position in [60, good.count / 2, good.count - 5, good.count - 1] {
            bad = good; bad[position] ^= 0x10
            #expect(kind(bad) == .checksumMismatch, "flipped byte \(position)")
        }
        // Header row count changed: length no longer matches.
        bad = good; bad[12] = 5
        #expect(kind(bad) == .lengthMismatch)
    }
}
