// FeatureBatchCodec: the binary form of one feature batch plus where it came from, as stored in
// the Redis feature streams (`sr:fs:{s}`, field "b") and read by trainers.
//
// Layout, version 1 (all integers little-endian; offsets in bytes):
//
//   0   magic            4  "SRFB"
//   4   version          u16  1
//   6   flags            u16  bit 0: full weights (B×F floats) instead of the dense prefix
//                              bit 1: labels as Float32 (B×4 bytes) instead of one byte each
//   8   fieldCount F     u16  39 for Criteo
//   10  denseCount D     u16  weights stored per row when bit 0 is clear (13 for Criteo)
//   12  rowCount B       u32  valid rows in the batch (may be 0: a unit of only dead letters)
//   16  partition        i32  source Kafka partition
//   20  rejected         u32  rows rejected (dead-lettered) inside [firstOffset, lastOffset]
//   24  firstOffset      i64  first Kafka offset covered (inclusive)
//   32  lastOffset       i64  last Kafka offset covered (inclusive); the range covers the valid
//                              rows AND the rejected rows (and offsets lost upstream) in between
//   40  producedAtMs     i64  earliest Kafka message timestamp in the batch (ms since epoch;
//                              0 when the broker gave none) — freshness is measured from it
//   48  topicLength T    u16
//   50  topic            T bytes, UTF-8
//   …   ids              Int32 [B×F]   row-major: row b, field f at b×F + f
//   …   weights          Float32 [B×D] (flag 0: fields 0..<D; every other weight is exactly 1)
//                        or Float32 [B×F] (flag bit 0)
//   …   labels           UInt8 [B] (0/1)   or Float32 [B] (flag bit 1)
//   end checksum         u32  CRC32C (Castagnoli) of every byte before it
//
// The encoder picks the compact forms when they are exact (categorical weights all 1, labels all
// 0/1) and falls back to the full forms otherwise, so decode(encode(x)) == x bit for bit.
// A reader that meets an unknown version must refuse the batch (not guess): upgrade streamrec.

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
    public enum Kind: String, Sendable { case badMagic, unsupportedVersion, truncated, lengthMismatch, checksumMismatch, invalidHeader, invalidContent }
    public var kind: Kind
    public var message: String
    public var description: String { message }
    init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
}

public enum FeatureBatchCodec {
    public static let magic: [UInt8] = Array("SRFB".utf8)
    public static let version: UInt16 = 1
    /// Feature ids a batch may carry: 0..<2^27 (134M). Models index their rows by id through a
    /// dense array, so an id near 2^31 in a corrupt batch would otherwise cost gigabytes.
    public static let idLimit: Int32 = 1 << 27
    static let headerSize = 50
    static let flagFullWeights: UInt16 = 1
    static let flagFloatLabels: UInt16 = 2

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
        let topic = Array(source.topic.utf8.prefix(Int(UInt16.max)))
        let W = compactWeights ? D : F
        let total = headerSize + topic.count + B * F * 4 + B * W * 4 + (byteLabels ? B : 4 * B) + 4
        out.removeAll(keepingCapacity: true)
        out.reserveCapacity(total)
        out.append(contentsOf: magic)
        put16(&out, version); put16(&out, flags); put16(&out, UInt16(F)); put16(&out, UInt16(D))
        put32(&out, UInt32(B)); put32(&out, UInt32(bitPattern: source.partition))
        put32(&out, UInt32(clamping: max(0, source.rejectedRows)))
        put64(&out, UInt64(bitPattern: source.firstOffset)); put64(&out, UInt64(bitPattern: source.lastOffset))
        put64(&out, UInt64(bitPattern: source.producedAtMs))
        put16(&out, UInt16(topic.count)); out.append(contentsOf: topic)
        let start = out.count
        let body = total - 4 - start
        out.append(contentsOf: repeatElement(0, count: body))
        out.withUnsafeMutableBytes { raw in
            var p = start
            // Ids and weights: little-endian on every platform Swift supports on Linux/macOS,
            // but stay explicit.
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
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer($0)) }
        put32(&out, crc)
    }

    /// Decodes and validates every part (magic, version, sizes, checksum).
    public static func decode(_ bytes: [UInt8]) throws(FeatureBatchCodecError) -> SourcedFeatureBatch {
        let result: Result<SourcedFeatureBatch, FeatureBatchCodecError> = bytes.withUnsafeBytes { raw in
            do throws(FeatureBatchCodecError) { return .success(try decode(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    public static func decode(_ raw: UnsafeRawBufferPointer) throws(FeatureBatchCodecError) -> SourcedFeatureBatch {
        let n = raw.count
        guard n >= 4, raw[0] == magic[0], raw[1] == magic[1], raw[2] == magic[2], raw[3] == magic[3] else {
            throw FeatureBatchCodecError(.badMagic, "not a StreamRec feature batch (expected magic \"SRFB\"); "
                + "the stream holds foreign data — check the Redis key prefix and that only `streamrec featurize` writes to it")
        }
        guard n >= 6 else { throw FeatureBatchCodecError(.truncated, "feature batch truncated: \(n) bytes, header needs \(headerSize + 4)") }
        let version = get16(raw, 4)
        guard version == Self.version else {
            throw FeatureBatchCodecError(.unsupportedVersion,
                "feature batch format version \(version), but this streamrec reads version \(Self.version); "
                + "upgrade the trainer to the streamrec build that produced it (or re-run featurize with this build)")
        }
        guard n >= headerSize + 4 else {
            throw FeatureBatchCodecError(.truncated, "feature batch truncated: \(n) bytes, header needs \(headerSize + 4)")
        }
        let flags = get16(raw, 6)
        let F = Int(get16(raw, 8)), D = Int(get16(raw, 10))
        let B = Int(get32(raw, 12))
        guard F > 0, D <= F, flags & ~(flagFullWeights | flagFloatLabels) == 0 else {
            throw FeatureBatchCodecError(.invalidHeader, "feature batch header is invalid (fields \(F), dense \(D), flags \(flags))")
        }
        let T = Int(get16(raw, 48))
        let W = flags & flagFullWeights != 0 ? F : D
        let labelBytes = flags & flagFloatLabels != 0 ? 4 : 1
        let expected = headerSize + T + B * F * 4 + B * W * 4 + B * labelBytes + 4
        guard expected == n else {
            throw FeatureBatchCodecError(.lengthMismatch,
                "feature batch length mismatch: header describes \(expected) bytes (\(B) rows × \(F) fields), got \(n); the entry is truncated or corrupt")
        }
        let stored = get32(raw, n - 4)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<(n - 4)]))
        guard stored == computed else {
            throw FeatureBatchCodecError(.checksumMismatch,
                "feature batch checksum mismatch (stored \(hex(stored)), computed \(hex(computed))); the entry is corrupt")
        }
        let topic = String(decoding: UnsafeRawBufferPointer(rebasing: raw[headerSize..<(headerSize + T)]), as: UTF8.self)
        let source = FeatureBatchSource(topic: topic, partition: Int32(bitPattern: get32(raw, 16)),
                                        firstOffset: Int64(bitPattern: get64(raw, 24)),
                                        lastOffset: Int64(bitPattern: get64(raw, 32)),
                                        rejectedRows: Int(get32(raw, 20)),
                                        producedAtMs: Int64(bitPattern: get64(raw, 40)))
        var p = headerSize + T
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
        return SourcedFeatureBatch(batch: FeatureBatch(fieldCount: F, ids: ids, weights: weights, labels: labels),
                                   source: source)
    }

    private static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
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
