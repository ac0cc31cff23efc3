// FeatureBatchCodec: the binary form of one feature batch plus where it came from, as stored in
// the Redis feature streams (`sr:fs:{s}` for Criteo rows, `sr:rl:fs:{s}` for behaviour
// transitions; field "b") and read by trainers.
//
// Every batch is an ENVELOPE (magic, version, kind, source range, CRC) around a payload whose
// layout the kind decides. Version 3 (all integers little-endian; offsets in bytes):
//
//   0   magic            4  "SRFB"
//   4   version          u16  3
//   6   kind             u16  1 = rows (Criteo: ids/weights/labels), 2 = transitions (behaviour)
//   8   partition        i32  source Kafka partition
//   12  rejected         u32  messages rejected (dead-lettered) inside [firstOffset, lastOffset]
//   16  firstOffset      i64  first Kafka offset covered (inclusive)
//   24  lastOffset       i64  last Kafka offset covered (inclusive); the range covers the valid
//                              messages AND the rejected ones (and offsets lost upstream) in between
//   32  producedAtMs     i64  earliest Kafka message timestamp in the batch (ms since epoch;
//                              0 when the broker gave none) — freshness is measured from it
//   40  topicLength T    u16
//   42  topic            T bytes, UTF-8
//   …   payload          (below)
//   end checksum         u32  CRC32C (Castagnoli) of every byte before it
//
// Payload of kind 1, rows (B rows × F fields):
//   +0  flags            u16  bit 0: full weights (B×F floats) instead of the dense prefix
//                              bit 1: labels as Float32 (B×4 bytes) instead of one byte each
//   +2  fieldCount F     u16  39 for Criteo
//   +4  denseCount D     u16  weights stored per row when bit 0 is clear (13 for Criteo)
//   +6  reserved         u16  0
//   +8  rowCount B       u32  valid rows (may be 0: a unit of only dead letters)
//   +12 ids              Int32 [B×F]   row-major: row b, field f at b×F + f
//   …   weights          Float32 [B×D] (flag 0: fields 0..<D; every other weight is exactly 1)
//                        or Float32 [B×F] (flag bit 1)
//   …   labels           UInt8 [B] (0/1)   or Float32 [B] (flag bit 1)
//
// Payload of kind 2, transitions (B transitions, history H, reward window W; see `TransitionBatch`):
//   +0  count B          u32
//   +4  historyLength H  u16
//   +6  rewardWindow W   u16  ≥ 1 (version 2: reserved, 0, read as W = 1)
//   +8  users            Int32 [B]
//   …   states           Int32 [B×H]  the H items before the action, oldest first, padded in front
//                                      with `TransitionBatch.paddingItem`
//   …   actions          Int32 [B]
//   …   rewards          Float32 [B×W] row-major: the action's reward, then its next W−1 events'
//                                      in the same session (0 after the session ended)
//   …   done             UInt8 [B]   0/1
//   …   times            Int64 [B]   event time of the action (Unix seconds)
//   (the next state is the state shifted by one with the action appended: not stored)
//
// The rows encoder picks the compact forms when they are exact (categorical weights all 1, labels
// all 0/1) and falls back to the full forms otherwise, so decode(encode(x)) == x bit for bit.
// Version 2 (the same envelope; transitions with one reward each) and version 1 (the rows layout
// without a kind, written before behaviour events existed) are still read. A reader that meets
// an unknown version refuses the batch (upgrade streamrec); one that
// meets a kind it does not handle refuses it by name.

/// What a feature batch carries.
public enum FeatureBatchKind: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// Criteo rows: ids, weights and labels per field (Wide&Deep).
    case rows = 1
    /// Behaviour transitions: user, state, action, reward, done, time (the RL models).
    case transitions = 2

    public var name: String { self == .rows ? "rows" : "transitions" }
    public var description: String { name }
    /// What produces it, for error messages.
    var producedBy: String {
        self == .rows ? "`streamrec featurize --kind criteo` (Criteo rows)" : "`streamrec featurize --kind behavior` (behaviour events)"
    }
}

/// Where a batch came from: the Kafka range it covers and how many rows in it were refused.
public struct FeatureBatchSource: Sendable, Equatable, Codable {
    public var topic: String
    public var partition: Int32
    /// First and last Kafka offsets covered, inclusive.
    public var firstOffset: Int64
    public var lastOffset: Int64
    /// Rows in the range that went to dead letters instead of the batch.
    public var rejectedRows: Int
    /// Earliest Kafka message timestamp among the batch's messages (ms since the epoch), 0 if none.
    public var producedAtMs: Int64

    public init(topic: String, partition: Int32, firstOffset: Int64, lastOffset: Int64,
                rejectedRows: Int = 0, producedAtMs: Int64 = 0) {
        self.topic = topic; self.partition = partition
        self.firstOffset = firstOffset; self.lastOffset = lastOffset
        self.rejectedRows = rejectedRows; self.producedAtMs = producedAtMs
    }
}

/// A batch with its source, as stored in a feature stream.
public struct SourcedFeatureBatch: Sendable, Equatable {
    public var batch: FeatureBatch
    public var source: FeatureBatchSource
    public init(batch: FeatureBatch, source: FeatureBatchSource) { self.batch = batch; self.source = source }
}

/// Why bytes could not be decoded as a feature batch. The description says what to do.
public struct FeatureBatchCodecError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case badMagic, unsupportedVersion, unsupportedKind, unexpectedKind, truncated, lengthMismatch, checksumMismatch, invalidHeader, invalidContent }
    public var kind: Kind
    public var message: String
    public var description: String { message }
    init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
}

public enum FeatureBatchCodec {
    public static let magic: [UInt8] = Array("SRFB".utf8)
    public static let version: UInt16 = 3
    /// Feature ids a batch may carry: 0..<2^27 (134M). Models index their rows by id through a
    /// dense array, so an id near 2^31 in a corrupt batch would otherwise cost gigabytes.
    public static let idLimit: Int32 = 1 << 27
    /// Bytes before the topic in a version-2 or -3 envelope.
    static let envelopeSize = 42
    static let rowsPayloadHeader = 12
    static let transitionsPayloadHeader = 8
    static let flagFullWeights: UInt16 = 1
    static let flagFloatLabels: UInt16 = 2

    // MARK: Envelope

    /// Appends the current version's envelope header (through the topic) to `out`, cleared first.
    static func beginEnvelope(_ kind: FeatureBatchKind, source: FeatureBatchSource, payloadBytes: Int, into out: inout [UInt8]) {
        let topic = Array(source.topic.utf8.prefix(Int(UInt16.max)))
        out.removeAll(keepingCapacity: true)
        out.reserveCapacity(envelopeSize + topic.count + payloadBytes + 4)
        out.append(contentsOf: magic)
        put16(&out, version); put16(&out, kind.rawValue)
        put32(&out, UInt32(bitPattern: source.partition))
        put32(&out, UInt32(clamping: max(0, source.rejectedRows)))
        put64(&out, UInt64(bitPattern: source.firstOffset)); put64(&out, UInt64(bitPattern: source.lastOffset))
        put64(&out, UInt64(bitPattern: source.producedAtMs))
        put16(&out, UInt16(topic.count)); out.append(contentsOf: topic)
    }

    /// Appends the checksum of everything in `out`.
    static func endEnvelope(_ out: inout [UInt8]) {
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer($0)) }
        put32(&out, crc)
    }

    /// A checked envelope: kind, source, and where its payload lies in the bytes.
    public struct Envelope: Sendable {
        public var version: UInt16
        public var kind: FeatureBatchKind
        public var source: FeatureBatchSource
        /// Byte range of the payload (between the topic and the checksum).
        public var payload: Range<Int>
        let storedChecksum: UInt32
        let computedChecksum: UInt32

        /// Throws when the checksum does not match. Decoders call it after checking the payload
        /// length, so a truncated entry says so rather than "checksum mismatch".
        public func verify() throws(FeatureBatchCodecError) {
            guard storedChecksum == computedChecksum else {
                throw FeatureBatchCodecError(.checksumMismatch,
                    "feature batch checksum mismatch (stored 0x\(String(storedChecksum, radix: 16)), computed 0x\(String(computedChecksum, radix: 16))); the entry is corrupt")
            }
        }
    }

    /// Checks magic, version, kind and checksum, and reads the source. For version 1 (rows
    /// only) the payload range starts at its flags field.
    public static func envelope(_ raw: UnsafeRawBufferPointer) throws(FeatureBatchCodecError) -> Envelope {
        let n = raw.count
        guard n >= 4, raw[0] == magic[0], raw[1] == magic[1], raw[2] == magic[2], raw[3] == magic[3] else {
            throw FeatureBatchCodecError(.badMagic, "not a StreamRec feature batch (expected magic \"SRFB\"); "
                + "the stream holds foreign data — check the Redis key prefix and that only `streamrec featurize` writes to it")
        }
        guard n >= 6 else { throw FeatureBatchCodecError(.truncated, "feature batch truncated: \(n) bytes") }
        let version = get16(raw, 4)
        guard (1...3).contains(version) else {
            throw FeatureBatchCodecError(.unsupportedVersion,
                "feature batch format version \(version), but this streamrec reads versions 1 to 3; "
                + "upgrade the trainer to the streamrec build that produced it (or re-run featurize with this build)")
        }
        // Version 1: magic, version, flags, F, D, B, partition, rejected, offsets, producedAt, topic (50 bytes + T).
        let headerEnd = version == 1 ? 50 : envelopeSize
        guard n >= headerEnd + 4 else {
            throw FeatureBatchCodecError(.truncated, "feature batch truncated: \(n) bytes, its header needs \(headerEnd + 4)")
        }
        let stored = get32(raw, n - 4)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<(n - 4)]))
        let T = Int(get16(raw, headerEnd - 2))
        // Length first (a truncated entry says so), then the checksum.
        guard headerEnd + T + 4 <= n else {
            throw FeatureBatchCodecError(.lengthMismatch, "feature batch length mismatch: its topic alone needs \(headerEnd + T + 4) bytes, got \(n); the entry is truncated or corrupt")
        }
        let base = version == 1 ? 16 : 8
        let source = FeatureBatchSource(
            topic: String(decoding: UnsafeRawBufferPointer(rebasing: raw[headerEnd..<(headerEnd + T)]), as: UTF8.self),
            partition: Int32(bitPattern: get32(raw, base)),
            firstOffset: Int64(bitPattern: get64(raw, base + 8)), lastOffset: Int64(bitPattern: get64(raw, base + 16)),
            rejectedRows: Int(get32(raw, base + 4)), producedAtMs: Int64(bitPattern: get64(raw, base + 24)))
        if version == 1 {
            // The payload length is checked by the payload decoder; the checksum last, as in v2.
            return Envelope(version: 1, kind: .rows, source: source, payload: (headerEnd + T)..<(n - 4),
                            storedChecksum: stored, computedChecksum: computed)
        }
        let rawKind = get16(raw, 6)
        guard let kind = FeatureBatchKind(rawValue: rawKind) else {
            guard stored == computed else { throw FeatureBatchCodecError(.checksumMismatch, "feature batch checksum mismatch; the entry is corrupt") }
            throw FeatureBatchCodecError(.unsupportedKind,
                "feature batch of unknown kind \(rawKind) (this streamrec knows \(FeatureBatchKind.allCases.map { "\($0.rawValue) = \($0)" }.joined(separator: ", "))); "
                + "upgrade streamrec to the build that produced it")
        }
        return Envelope(version: version, kind: kind, source: source, payload: (headerEnd + T)..<(n - 4),
                        storedChecksum: stored, computedChecksum: computed)
    }

    // MARK: Rows (kind 1)

    /// Encodes `batch` and its source. `denseCount` is how many leading fields carry a real weight
    /// (the rest must be exactly 1 for the compact form; otherwise all weights are stored).
    public static func encode(_ batch: FeatureBatch, source: FeatureBatchSource,
                              denseCount: Int = CriteoSchema.denseCount) -> [UInt8] {
        var out: [UInt8] = []
        encode(batch, source: source, denseCount: denseCount, into: &out)
        return out
    }

    /// Encodes into `out` (cleared first, capacity kept): the allocation-free form for hot loops.
    public static func encode(_ batch: FeatureBatch, source: FeatureBatchSource,
                              denseCount: Int = CriteoSchema.denseCount, into out: inout [UInt8]) {
        batch.ids.withUnsafeBufferPointer { ids in
            batch.weights.withUnsafeBufferPointer { weights in
                batch.labels.withUnsafeBufferPointer { labels in
                    encode(fieldCount: batch.fieldCount, rows: batch.count, ids: ids, weights: weights,
                           labels: labels, source: source, denseCount: denseCount, into: &out)
                }
            }
        }
    }

    /// Encodes from raw buffers: `ids`/`weights` hold at least rows×fieldCount, `labels` rows.
    public static func encode(fieldCount F: Int, rows B: Int, ids: UnsafeBufferPointer<Int32>,
                              weights: UnsafeBufferPointer<Float>, labels: UnsafeBufferPointer<Float>,
                              source: FeatureBatchSource, denseCount: Int = CriteoSchema.denseCount,
                              into out: inout [UInt8]) {
        precondition(F > 0 && F <= Int(UInt16.max) && B >= 0 && ids.count >= B * F
                     && weights.count >= B * F && labels.count >= B)
        let D = min(denseCount, F)
        var compactWeights = true
        outer: for b in 0..<B {
            for f in D..<F where weights[b * F + f] != 1 { compactWeights = false; break outer }
        }
        var byteLabels = true
        for b in 0..<B where !(labels[b] == 0 || labels[b] == 1) || labels[b].sign == .minus { byteLabels = false; break }
        var flags: UInt16 = 0
        if !compactWeights { flags |= flagFullWeights }
        if !byteLabels { flags |= flagFloatLabels }
        let W = compactWeights ? D : F
        let payload = rowsPayloadHeader + B * F * 4 + B * W * 4 + (byteLabels ? B : 4 * B)
        beginEnvelope(.rows, source: source, payloadBytes: payload, into: &out)
        put16(&out, flags); put16(&out, UInt16(F)); put16(&out, UInt16(D)); put16(&out, 0)
        put32(&out, UInt32(B))
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: payload - rowsPayloadHeader))
        out.withUnsafeMutableBytes { raw in
            var p = start
            // Little-endian on every platform Swift supports on Linux/macOS, but stay explicit.
            for k in 0..<(B * F) { raw.storeBytes(of: UInt32(bitPattern: ids[k]).littleEndian, toByteOffset: p, as: UInt32.self); p += 4 }
            if compactWeights {
                for b in 0..<B {
                    for f in 0..<D {
                        raw.storeBytes(of: weights[b * F + f].bitPattern.littleEndian, toByteOffset: p, as: UInt32.self); p += 4
                    }
                }
            } else {
                for k in 0..<(B * F) { raw.storeBytes(of: weights[k].bitPattern.littleEndian, toByteOffset: p, as: UInt32.self); p += 4 }
            }
            if byteLabels {
                for b in 0..<B { raw[p] = labels[b] == 1 ? 1 : 0; p += 1 }
            } else {
                for b in 0..<B { raw.storeBytes(of: labels[b].bitPattern.littleEndian, toByteOffset: p, as: UInt32.self); p += 4 }
            }
        }
        endEnvelope(&out)
    }

    /// Decodes a batch of kind `rows` and validates every part (magic, version, kind, sizes,
    /// checksum, values). A batch of another kind is refused by name.
    public static func decode(_ bytes: [UInt8]) throws(FeatureBatchCodecError) -> SourcedFeatureBatch {
        let result: Result<SourcedFeatureBatch, FeatureBatchCodecError> = bytes.withUnsafeBytes { raw in
            do throws(FeatureBatchCodecError) { return .success(try decode(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    public static func decode(_ raw: UnsafeRawBufferPointer) throws(FeatureBatchCodecError) -> SourcedFeatureBatch {
        let e = try envelope(raw)
        try expect(.rows, e)
        return try decodeRows(raw, e)
    }

    /// A batch of either kind.
    public enum Decoded: Sendable, Equatable {
        case rows(SourcedFeatureBatch)
        case transitions(SourcedTransitionBatch)
    }

    /// Decodes a batch of any kind this build knows.
    public static func decodeAny(_ bytes: [UInt8]) throws(FeatureBatchCodecError) -> Decoded {
        let result: Result<Decoded, FeatureBatchCodecError> = bytes.withUnsafeBytes { raw in
            do throws(FeatureBatchCodecError) {
                let e = try envelope(raw)
                switch e.kind {
                case .rows: return .success(.rows(try decodeRows(raw, e)))
                case .transitions: return .success(.transitions(try decodeTransitions(raw, e)))
                }
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    static func expect(_ kind: FeatureBatchKind, _ e: Envelope) throws(FeatureBatchCodecError) {
        guard e.kind == kind else {
            try e.verify()
            throw FeatureBatchCodecError(.unexpectedKind,
                "feature batch of kind `\(e.kind)` (written by \(e.kind.producedBy)), but this reader handles kind `\(kind)` "
                + "(\(kind.producedBy)); point it at the feature store of the matching pipeline, or use a model whose family "
                + "trains on `\(e.kind)`")
        }
    }

    static func decodeRows(_ raw: UnsafeRawBufferPointer, _ e: Envelope) throws(FeatureBatchCodecError) -> SourcedFeatureBatch {
        let n = raw.count
        let flags: UInt16, F: Int, D: Int, B: Int
        var p: Int
        if e.version == 1 {
            flags = get16(raw, 6); F = Int(get16(raw, 8)); D = Int(get16(raw, 10)); B = Int(get32(raw, 12))
            p = e.payload.lowerBound
        } else {
            guard e.payload.count >= rowsPayloadHeader else {
                throw FeatureBatchCodecError(.lengthMismatch, "feature batch length mismatch: \(e.payload.count) payload bytes, a rows header needs \(rowsPayloadHeader)")
            }
            let h = e.payload.lowerBound
            flags = get16(raw, h); F = Int(get16(raw, h + 2)); D = Int(get16(raw, h + 4)); B = Int(get32(raw, h + 8))
            p = h + rowsPayloadHeader
        }
        guard F > 0, D <= F, flags & ~(flagFullWeights | flagFloatLabels) == 0 else {
            throw FeatureBatchCodecError(.invalidHeader, "feature batch header is invalid (fields \(F), dense \(D), flags \(flags))")
        }
        let W = flags & flagFullWeights != 0 ? F : D
        let labelBytes = flags & flagFloatLabels != 0 ? 4 : 1
        let expected = p + B * F * 4 + B * W * 4 + B * labelBytes + 4
        guard expected == n else {
            throw FeatureBatchCodecError(.lengthMismatch,
                "feature batch length mismatch: header describes \(expected) bytes (\(B) rows × \(F) fields), got \(n); the entry is truncated or corrupt")
        }
        try e.verify()
        // The checksum only proves the bytes are the ones written: the values are checked too,
        // because they index the model's rows and feed its kernels (which run without checks).
        var badId = -1, badWeight = -1, badLabel = -1
        let ids = [Int32](unsafeUninitializedCapacity: B * F) { buf, count in
            for k in 0..<(B * F) {
                let id = Int32(bitPattern: get32(raw, p)); p += 4
                if (id < 0 || id >= idLimit) && badId < 0 { badId = k }
                buf[k] = id
            }
            count = B * F
        }
        let weights = [Float](unsafeUninitializedCapacity: B * F) { buf, count in
            if W == F {
                for k in 0..<(B * F) { buf[k] = Float(bitPattern: get32(raw, p)); p += 4 }
            } else {
                for b in 0..<B {
                    for f in 0..<D { buf[b * F + f] = Float(bitPattern: get32(raw, p)); p += 4 }
                    for f in D..<F { buf[b * F + f] = 1 }
                }
            }
            count = B * F
        }
        let labels = [Float](unsafeUninitializedCapacity: B) { buf, count in
            if labelBytes == 1 {
                for b in 0..<B { buf[b] = raw[p] == 0 ? 0 : 1; p += 1 }
            } else {
                for b in 0..<B {
                    let y = Float(bitPattern: get32(raw, p)); p += 4
                    if !(y >= 0 && y <= 1) && badLabel < 0 { badLabel = b }
                    buf[b] = y
                }
            }
            count = B
        }
        if badId >= 0 {
            throw FeatureBatchCodecError(.invalidContent,
                "feature batch row \(badId / F) field \(badId % F) has feature id \(ids[badId]), outside 0..<\(idLimit); the entry is corrupt")
        }
        for k in 0..<(B * F) where !weights[k].isFinite { badWeight = k; break }
        if badWeight >= 0 {
            throw FeatureBatchCodecError(.invalidContent,
                "feature batch row \(badWeight / F) field \(badWeight % F) has a non-finite weight \(weights[badWeight]); the entry is corrupt")
        }
        if badLabel >= 0 {
            throw FeatureBatchCodecError(.invalidContent,
                "feature batch row \(badLabel) has label \(labels[badLabel]), labels must be in [0, 1]; the entry is corrupt")
        }
        return SourcedFeatureBatch(batch: FeatureBatch(fieldCount: F, ids: ids, weights: weights, labels: labels), source: e.source)
    }

    // MARK: Transitions (kind 2)

    /// Encodes a transition batch into `out` (cleared first).
    public static func encode(_ batch: TransitionBatch, source: FeatureBatchSource, into out: inout [UInt8]) {
        let B = batch.count, H = batch.historyLength, W = batch.rewardWindow
        precondition(H >= 0 && H <= Int(UInt16.max) && W >= 1 && W <= Int(UInt16.max) && batch.rewards.count == B * W)
        let payload = transitionsPayloadHeader + B * (4 + 4 * H + 4 + 4 * W + 1 + 8)
        beginEnvelope(.transitions, source: source, payloadBytes: payload, into: &out)
        put32(&out, UInt32(B)); put16(&out, UInt16(H)); put16(&out, UInt16(W))
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: payload - transitionsPayloadHeader))
        out.withUnsafeMutableBytes { raw in
            var p = start
            func i32(_ v: Int32) { raw.storeBytes(of: UInt32(bitPattern: v).littleEndian, toByteOffset: p, as: UInt32.self); p += 4 }
            for v in batch.users { i32(v) }
            for v in batch.states { i32(v) }
            for v in batch.actions { i32(v) }
            for v in batch.rewards { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: p, as: UInt32.self); p += 4 }
            for v in batch.done { raw[p] = v ? 1 : 0; p += 1 }
            for v in batch.times { raw.storeBytes(of: UInt64(bitPattern: v).littleEndian, toByteOffset: p, as: UInt64.self); p += 8 }
        }
        endEnvelope(&out)
    }

    public static func encode(_ batch: TransitionBatch, source: FeatureBatchSource) -> [UInt8] {
        var out: [UInt8] = []
        encode(batch, source: source, into: &out)
        return out
    }

    /// Decodes a batch of kind `transitions`; a batch of another kind is refused by name.
    public static func decodeTransitions(_ bytes: [UInt8]) throws(FeatureBatchCodecError) -> SourcedTransitionBatch {
        let result: Result<SourcedTransitionBatch, FeatureBatchCodecError> = bytes.withUnsafeBytes { raw in
            do throws(FeatureBatchCodecError) {
                let e = try envelope(raw)
                try expect(.transitions, e)
                return .success(try decodeTransitions(raw, e))
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    static func decodeTransitions(_ raw: UnsafeRawBufferPointer, _ e: Envelope) throws(FeatureBatchCodecError) -> SourcedTransitionBatch {
        let h = e.payload.lowerBound
        guard e.payload.count >= transitionsPayloadHeader else {
            throw FeatureBatchCodecError(.lengthMismatch, "transition batch length mismatch: \(e.payload.count) payload bytes, its header needs \(transitionsPayloadHeader)")
        }
        // Version 2 had one reward per transition (and 0 in the field that now holds W).
        let B = Int(get32(raw, h)), H = Int(get16(raw, h + 4)), W = e.version == 2 ? 1 : Int(get16(raw, h + 6))
        guard W >= 1 else {
            try e.verify()
            throw FeatureBatchCodecError(.invalidHeader, "transition batch header has reward window 0 (at least 1); the entry is corrupt")
        }
        let expected = transitionsPayloadHeader + B * (4 + 4 * H + 4 + 4 * W + 1 + 8)
        guard expected == e.payload.count else {
            throw FeatureBatchCodecError(.lengthMismatch,
                "transition batch length mismatch: header describes \(expected) payload bytes (\(B) transitions, history \(H), reward window \(W)), got \(e.payload.count); the entry is truncated or corrupt")
        }
        try e.verify()
        var p = h + transitionsPayloadHeader
        func ints(_ n: Int) -> [Int32] {
            [Int32](unsafeUninitializedCapacity: n) { buf, count in
                for k in 0..<n { buf[k] = Int32(bitPattern: get32(raw, p)); p += 4 }
                count = n
            }
        }
        let users = ints(B), states = ints(B * H), actions = ints(B)
        let rewards = [Float](unsafeUninitializedCapacity: B * W) { buf, count in
            for k in 0..<(B * W) { buf[k] = Float(bitPattern: get32(raw, p)); p += 4 }
            count = B * W
        }
        var badDone = -1
        let done = (0..<B).map { k -> Bool in
            let v = raw[p + k]
            if v > 1 && badDone < 0 { badDone = k }
            return v == 1
        }
        p += B
        let times = [Int64](unsafeUninitializedCapacity: B) { buf, count in
            for k in 0..<B { buf[k] = Int64(bitPattern: get64(raw, p)); p += 8 }
            count = B
        }
        // Ids index embedding rows and rewards feed the returns: checked like the rows' values.
        for (what, values) in [("user", users), ("state item", states), ("action", actions)] {
            if let k = values.firstIndex(where: { $0 < 0 || $0 >= idLimit }) {
                throw FeatureBatchCodecError(.invalidContent,
                    "transition batch \(what) #\(k) has id \(values[k]), outside 0..<\(idLimit); the entry is corrupt")
            }
        }
        if let k = rewards.firstIndex(where: { !$0.isFinite }) {
            throw FeatureBatchCodecError(.invalidContent, "transition batch #\(k / W) has a non-finite reward \(rewards[k]); the entry is corrupt")
        }
        if badDone >= 0 {
            throw FeatureBatchCodecError(.invalidContent, "transition batch #\(badDone) has a done flag other than 0/1; the entry is corrupt")
        }
        return SourcedTransitionBatch(
            batch: TransitionBatch(historyLength: H, rewardWindow: W, users: users, states: states, actions: actions, rewards: rewards, done: done, times: times),
            source: e.source)
    }

    @inline(__always) static func put16(_ o: inout [UInt8], _ v: UInt16) { o.append(UInt8(v & 0xFF)); o.append(UInt8(v >> 8)) }
    @inline(__always) static func put32(_ o: inout [UInt8], _ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { o.append(UInt8((v >> UInt32(s)) & 0xFF)) } }
    @inline(__always) static func put64(_ o: inout [UInt8], _ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { o.append(UInt8((v >> UInt64(s)) & 0xFF)) } }
    @inline(__always) static func get16(_ r: UnsafeRawBufferPointer, _ p: Int) -> UInt16 { UInt16(littleEndian: r.loadUnaligned(fromByteOffset: p, as: UInt16.self)) }
    @inline(__always) static func get32(_ r: UnsafeRawBufferPointer, _ p: Int) -> UInt32 { UInt32(littleEndian: r.loadUnaligned(fromByteOffset: p, as: UInt32.self)) }
    @inline(__always) static func get64(_ r: UnsafeRawBufferPointer, _ p: Int) -> UInt64 { UInt64(littleEndian: r.loadUnaligned(fromByteOffset: p, as: UInt64.self)) }
}

// MARK: - CRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, slicing by 8.
/// `checksum("123456789") == 0xE3069283`.
public enum CRC32C {
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
        }
        return t
    }()

    /// CRC32C of `data`, continuing from `crc` (pass the previous result to chain).
    public static func checksum(_ data: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        let n = data.count
        guard n > 0, let base = data.baseAddress else { return crc }
        tables.withUnsafeBufferPointer { t in
            var i = 0
            while i + 8 <= n {
                let w = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) ^ UInt64(c)
                c = t[7 * 256 + Int(w & 0xFF)] ^ t[6 * 256 + Int((w >> 8) & 0xFF)]
                  ^ t[5 * 256 + Int((w >> 16) & 0xFF)] ^ t[4 * 256 + Int((w >> 24) & 0xFF)]
                  ^ t[3 * 256 + Int((w >> 32) & 0xFF)] ^ t[2 * 256 + Int((w >> 40) & 0xFF)]
                  ^ t[1 * 256 + Int((w >> 48) & 0xFF)] ^ t[Int(w >> 56)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { checksum($0) } }
}
