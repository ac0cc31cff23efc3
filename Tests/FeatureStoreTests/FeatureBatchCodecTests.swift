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
            let compactSize = 42 + "criteo-τ".utf8.count + 12 + rows * (39 * 4 + 13 * 4 + 1) + 4
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
        for position in [70, good.count / 2, good.count - 5, good.count - 1] {
            bad = good; bad[position] ^= 0x10
            #expect(kind(bad) == .checksumMismatch, "flipped byte \(position)")
        }
        // Header row count changed: length no longer matches.
        let rowCount = 42 + "criteo-τ".utf8.count + 8
        bad = good; bad[rowCount] = 5
        #expect(kind(bad) == .lengthMismatch)
        // An unknown kind is refused as such (with a valid checksum), a flipped kind as corrupt.
        bad = good; bad[6] = 9
        #expect(kind(bad) == .checksumMismatch)
        bad = Self.withChecksum(Array(bad.dropLast(4)))
        #expect(kind(bad) == .unsupportedKind)
    }

    static func withChecksum(_ body: [UInt8]) -> [UInt8] {
        let c = CRC32C.checksum(body)
        return body + [UInt8(c & 0xFF), UInt8((c >> 8) & 0xFF), UInt8((c >> 16) & 0xFF), UInt8(c >> 24)]
    }

    /// Version 1 (rows without a kind, written before behaviour events) is still read.
    @Test("version 1 batches still decode")
    func versionOne() throws {
        let x = Self.sample(rows: 3)
        let v2 = FeatureBatchCodec.encode(x.batch, source: x.source)
        // v1: magic, version 1, flags, F, D, B, partition, rejected, first, last, producedAt, topic, payload.
        let t = 42 + Array(x.source.topic.utf8).count
        var v1: [UInt8] = Array(v2[0..<4]) + [1, 0] + Array(v2[t..<(t + 6)]) + Array(v2[(t + 8)..<(t + 12)])
        v1 += Array(v2[8..<40]) + Array(v2[40..<t]) + Array(v2[(t + 12)..<(v2.count - 4)])
        #expect(try FeatureBatchCodec.decode(Self.withChecksum(v1)) == x)
    }

    @Test("transitions round trip; a rows reader refuses them by name and vice versa")
    func transitions() throws {
        var b = TransitionBatch(historyLength: 3)
        b.append(user: 7, state: [0, 0, 5], action: 9, reward: 2, done: false, time: 1_700_000_000)
        b.append(user: 8, state: [5, 9, 12], action: 4, reward: 1, done: true, time: 1_700_000_100)
        let source = FeatureBatchSource(topic: "behaviour", partition: 2, firstOffset: 10, lastOffset: 13, rejectedRows: 1, producedAtMs: 5)
        let bytes = FeatureBatchCodec.encode(b, source: source)
        let back = try FeatureBatchCodec.decodeTransitions(bytes)
        #expect(back == SourcedTransitionBatch(batch: b, source: source))
        #expect(back.batch.nextState(0) == [0, 5, 9])
        #expect(try FeatureBatchCodec.decodeAny(bytes) == .transitions(back))
        do { _ = try FeatureBatchCodec.decode(bytes); Issue.record("a rows reader accepted transitions") } catch {
            #expect(error.kind == .unexpectedKind && error.description.contains("`transitions`") && error.description.contains("`rows`"))
        }
        let rows = Self.sample(rows: 2)
        do { _ = try FeatureBatchCodec.decodeTransitions(FeatureBatchCodec.encode(rows.batch, source: rows.source)); Issue.record("accepted rows") } catch {
            #expect(error.kind == .unexpectedKind)
        }
        var corrupt = bytes; corrupt[corrupt.count / 2] ^= 1
        #expect(throws: FeatureBatchCodecError.self) { _ = try FeatureBatchCodec.decodeTransitions(corrupt) }
        var badId = b; badId.actions[1] = -3
        do { _ = try FeatureBatchCodec.decodeTransitions(FeatureBatchCodec.encode(badId, source: source)); Issue.record("accepted id -3") } catch {
            #expect(error.kind == .invalidContent)
        }
    }

    @Test("version 3 carries the reward window (B×W rewards); version 2 transitions and rows still decode (W = 1)")
    func rewardWindows() throws {
        var b = TransitionBatch(historyLength: 2, rewardWindow: 3)
        b.append(user: 7, state: [0, 5], action: 9, rewards: [2, 1, 3], done: false, time: 1_700_000_000)
        b.append(user: 7, state: [5, 9], action: 4, rewards: [1], done: true, time: 1_700_000_100)
        let source = FeatureBatchSource(topic: "behaviour", partition: 0, firstOffset: 3, lastOffset: 4)
        let bytes = FeatureBatchCodec.encode(b, source: source)
        let t = 42 + Array(source.topic.utf8).count
        #expect(bytes[4] == 3 && bytes[5] == 0 && bytes[t + 6] == 3 && bytes[t + 7] == 0)
        let back = try FeatureBatchCodec.decodeTransitions(bytes)
        #expect(back == SourcedTransitionBatch(batch: b, source: source))
        #expect(back.batch.rewards == [2, 1, 3, 1, 0, 0] && back.batch.reward(1) == 1)
        // A window of 0 is refused, as a corrupt header.
        var zero = Array(bytes.dropLast(4)); zero[t + 6] = 0
        do { _ = try FeatureBatchCodec.decodeTransitions(Self.withChecksum(zero)); Issue.record("accepted window 0") } catch {
            #expect(error.kind == .invalidHeader, "\(error)")
        }
        // Version 2, as featurize wrote it before reward windows: one reward each, 0 where W now is.
        var one = TransitionBatch(historyLength: 2)
        one.append(user: 3, state: [0, 0], action: 6, reward: 2.5, done: true, time: 9)
        var v2 = Array(FeatureBatchCodec.encode(one, source: source).dropLast(4))
        v2[4] = 2; v2[t + 6] = 0
        let old = try FeatureBatchCodec.decodeTransitions(Self.withChecksum(v2))
        #expect(old.batch == one && old.batch.rewardWindow == 1)
        var rowsV2 = Array(FeatureBatchCodec.encode(Self.sample(rows: 2).batch, source: source).dropLast(4))
        rowsV2[4] = 2
        #expect(try FeatureBatchCodec.decode(Self.withChecksum(rowsV2)).batch == Self.sample(rows: 2).batch)
        // An unknown newer version is refused with what to do.
        var v4 = Array(bytes.dropLast(4)); v4[4] = 4
        do { _ = try FeatureBatchCodec.decodeTransitions(Self.withChecksum(v4)); Issue.record("accepted version 4") } catch {
            #expect(error.kind == .unsupportedVersion && error.description.contains("upgrade"))
        }
    }
}
