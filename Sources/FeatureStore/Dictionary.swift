// The shared category dictionary: the offline snapshot loaded once, online growth by one Lua
// script per batch, and the local cache every worker encodes with (no Redis round trip per row).

import Features
import Foundation
import Streaming

/// The snapshot a feature store's dictionary was loaded from.
public struct DictionarySnapshotInfo: Sendable, Equatable {
    public var minFrequency: Int
    public var snapshotNextId: Int32
    public var snapshotCategories: Int
    public var checksum: UInt32
    public var loadedFrom: String
    /// True when this call loaded it; false when it was already there (loaded by another worker).
    public var loadedNow: Bool
}

/// One online-counted category of a batch: field, bytes, occurrences.
public struct CategoryCount: Sendable, Equatable {
    public var field: Int
    public var bytes: [UInt8]
    public var count: Int64
    public init(field: Int, bytes: [UInt8], count: Int64) { self.field = field; self.bytes = bytes; self.count = count }
}

extension FeatureStore {
    public static let snapshotVersion = 1

    /// Loads `stats`' dictionary into Redis once. The first caller (HSETNX on sr:dict:meta
    /// "state") writes every category, `next_id` and the metadata; later callers wait until it is
    /// ready and check that it came from the same statistics file (same CRC32C), else throw
    /// `FeatureStoreError.snapshotMismatch`. A load abandoned for longer than `staleAfter` (the
    /// loader crashed) is taken over.
    @discardableResult
    public func loadSnapshot(_ stats: FeatureStats, source: String = "features.stats",
                             staleAfter: Duration = .seconds(60), waitUpTo: Duration = .seconds(120)) throws -> DictionarySnapshotInfo {
        let checksum = CRC32C.checksum(stats.serialized())
        let meta = layout.dictMeta
        let now = { Int64(Date().timeIntervalSince1970 * 1000) }
        let token = "loading:\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString)"
        var won = try redis.command(["HSETNX", meta, "state", token]).integer == 1
        let deadline = ContinuousClock.now + waitUpTo
        if !won {
            // Someone else loads (or loaded) it: wait for "ready".
            while true {
                let fields = try hash(meta)
                let state = fields["state"] ?? ""
                if state == "ready" {
                    let info = DictionarySnapshotInfo(
                        minFrequency: Int(fields["min_frequency"] ?? "") ?? stats.minFrequency,
                        snapshotNextId: Int32(fields["snapshot_next_id"] ?? "") ?? 0,
                        snapshotCategories: Int(fields["snapshot_categories"] ?? "") ?? 0,
                        checksum: UInt32(fields["snapshot_checksum"] ?? "") ?? 0,
                        loadedFrom: fields["loaded_from"] ?? "", loadedNow: false)
                    guard info.checksum == checksum else {
                        throw FeatureStoreError.snapshotMismatch(
                            "the dictionary in Redis (prefix \(layout.prefix)) was loaded from a different statistics file "
                            + "(\(info.loadedFrom), CRC32C \(info.checksum), \(info.snapshotCategories) categories) than \(source) "
                            + "(CRC32C \(checksum), \(stats.categoryCount) categories); run every worker with the same --stats file, "
                            + "or use a fresh --prefix for a new snapshot")
                    }
                    return info
                }
                let started = Int64(fields["loading_started_ms"] ?? "") ?? 0
                if now() - started > Int64(staleAfter.components.seconds * 1000) && started > 0 {
                    // The loader died: take over (HSET is idempotent, so a partial load is harmless).
                    _ = try redis.command(["HSET", meta, "state", token])
                    won = true
                    break
                }
                if ContinuousClock.now > deadline {
                    throw FeatureStoreError.snapshotMismatch("timed out waiting for another worker to load the dictionary snapshot (state \(state))")
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        try redis.command(["HSET", meta, "loading_started_ms", "\(now())"])
        // Write categories in chunks: one HSET per field chunk, many commands per pipeline.
        var commands: [[[UInt8]]] = []
        var perField: [[(ArraySlice<UInt8>, Int32)]] = Array(repeating: [], count: CriteoSchema.categoricalCount)
        stats.forEachCategory { field, id, _, bytes in perField[field].append((bytes, id)) }
        func flush() throws {
            guard !commands.isEmpty else { return }
            for r in try redis.pipeline(bytes: commands) { try r.throwingIfError() }
            commands.removeAll(keepingCapacity: true)
        }
        for field in 0..<CriteoSchema.categoricalCount {
            let entries = perField[field]
            var k = 0
            while k < entries.count {
                let end = min(k + 1000, entries.count)
                var cmd: [[UInt8]] = [s("HSET"), s(layout.dict(field: field))]
                for (bytes, id) in entries[k..<end] { cmd.append(Array(bytes)); cmd.append(s("\(id)")) }
                commands.append(cmd)
                if commands.count >= 32 { try flush() }
                k = end
            }
        }
        try flush()
        try redis.command(["SET", layout.dictNextId, "\(stats.nextId)"])
        try redis.command(["HSET", meta, "min_frequency", "\(stats.minFrequency)", "snapshot_version", "\(Self.snapshotVersion)",
                           "snapshot_next_id", "\(stats.nextId)", "snapshot_categories", "\(stats.categoryCount)",
                           "snapshot_checksum", "\(checksum)", "loaded_from", source, "loaded_at_ms", "\(now())"])
        try redis.command(["HSET", meta, "state", "ready"])
        return DictionarySnapshotInfo(minFrequency: stats.minFrequency, snapshotNextId: stats.nextId,
                                      snapshotCategories: stats.categoryCount, checksum: checksum,
                                      loadedFrom: source, loadedNow: true)
    }

    // Counts categories missing from the snapshot, grouped by field:
    //   ARGV = prefix, cap, then per field: field, m, cat_1, count_1, …, cat_m, count_m (unique cats).
    // sr:dict:pending:{f} holds, per category counted online, its count while below min_frequency
    // and -id once it has an id — so ONE HMGET per field answers "new, pending or assigned" and no
    // lookup in the (large) sr:dict:{f} is needed: callers never send snapshot categories (their
    // cache holds the snapshot, verified by checksum). Ids are assigned in input order with one
    // INCRBY. Chunks of CH keep `unpack` under Lua's C-stack limit. Returns per input: id, or 0.
    // Memory bound: once a field's pending hash holds more than `cap` entries (0 = no cap), each
    // call also forgets about as many below-threshold counts as it added (lossy counting: HSCAN
    // on from where the last trim stopped, cursor in sr:dict:trim:{f}); markers are never removed,
    // so no category ever gets a second id. Forgotten counts are counted in sr:dict:meta.
    static let growScript = LuaScript("""
    local p, cap = ARGV[1], tonumber(ARGV[2])
    local minf = tonumber(redis.call('HGET', p .. ':dict:meta', 'min_frequency') or '1')
    local CH = 1000
    local out, crossing = {}, {}
    local nout, forgotten = 0, 0
    local i = 3
    while i <= #ARGV do
      local f, m = ARGV[i], tonumber(ARGV[i + 1])
      i = i + 2
      local pk = p .. ':dict:pending:' .. f
      local setp, ns = {}, 0
      for a = 1, m, CH do
        local b = math.min(a + CH - 1, m)
        local names = {}
        for t = a, b do names[t - a + 1] = ARGV[i + 2 * (t - 1)] end
        local pv = redis.call('HMGET', pk, unpack(names))
        for t = a, b do
          local v = tonumber(pv[t - a + 1])
          local ks = ARGV[i + 2 * (t - 1) + 1]
          nout = nout + 1
          out[nout] = 0
          if v and v < 0 then
            out[nout] = -v
          else
            local cnt = (v or 0) + tonumber(ks)
            if cnt >= minf then
              crossing[#crossing + 1] = {f, names[t - a + 1], nout}
            else
              -- A first sighting (the long tail) stores the count string as given: no number formatting.
              ns = ns + 2
              setp[ns - 1] = names[t - a + 1]; setp[ns] = v and cnt or ks
            end
          end
        end
      end
      for a = 1, #setp, 2 * CH do redis.call('HSET', pk, unpack(setp, a, math.min(a + 2 * CH - 1, #setp))) end
      if cap > 0 and redis.call('HLEN', pk) > cap then
        local ck = p .. ':dict:trim:' .. f
        local r = redis.call('HSCAN', pk, redis.call('GET', ck) or '0', 'COUNT', math.max(2 * m, 100))
        local del, kv = {}, r[2]
        for t = 1, #kv, 2 do if tonumber(kv[t + 1]) > 0 then del[#del + 1] = kv[t] end end
        for a = 1, #del, CH do redis.call('HDEL', pk, unpack(del, a, math.min(a + CH - 1, #del))) end
        redis.call('SET', ck, r[1])
        forgotten = forgotten + #del
      end
      i = i + 2 * m
    end
    if #crossing > 0 then
      local nid = redis.call('INCRBY', p .. ':dict:next_id', #crossing) - #crossing
      local dset, pset, order = {}, {}, {}
      for _, c in ipairs(crossing) do
        local f, cat = c[1], c[2]
        out[c[3]] = nid
        if not dset[f] then dset[f] = {}; pset[f] = {}; order[#order + 1] = f end
        local d, q = dset[f], pset[f]
        d[#d + 1] = cat; d[#d + 1] = nid
        q[#q + 1] = cat; q[#q + 1] = -nid
        redis.call('XADD', p .. ':dict:log', '*', 'f', f, 'c', cat, 'i', nid)
        nid = nid + 1
      end
      for _, f in ipairs(order) do
        local d, q = dset[f], pset[f]
        for a = 1, #d, 2 * CH do
          redis.call('HSET', p .. ':dict:' .. f, unpack(d, a, math.min(a + 2 * CH - 1, #d)))
          redis.call('HSET', p .. ':dict:pending:' .. f, unpack(q, a, math.min(a + 2 * CH - 1, #q)))
        end
      end
    end
    if forgotten > 0 then redis.call('HINCRBY', p .. ':dict:meta', 'forgotten_counts', forgotten) end
    return out
    """)

    /// Counts out-of-snapshot categories (ONE Lua script): each count is added to
    /// sr:dict:pending:{field}; a category reaching min_frequency gets the next id, is stored in
    /// sr:dict:{field} and logged to sr:dict:log, atomically. Returns, per entry of `table[range]`,
    /// the category's online id (assigned now or earlier) or nil while it is below the threshold.
    /// Precondition: no entry is a snapshot category (callers look those up locally first).
    /// `maxPendingPerField` > 0 bounds each sr:dict:pending:{field} (see the script).
    /// `namespace` replaces the prefix in every key (behaviour ids use `layout.behaviorIds(_:)`).
    public func growDictionary(_ table: CategoryTable, entries range: Range<Int>, maxPendingPerField: Int = 0,
                               namespace: String? = nil) throws -> [Int32?] {
        guard !range.isEmpty else { return [] }
        var byField = [[Int]](repeating: [], count: CriteoSchema.categoricalCount)
        for e in range { byField[table.field(at: e)].append(e) }
        var args: [[UInt8]] = [s(namespace ?? layout.prefix), s("\(max(0, maxPendingPerField))")]
        args.reserveCapacity(1 + 2 * CriteoSchema.categoricalCount + 2 * range.count)
        var order: [Int] = []
        order.reserveCapacity(range.count)
        for (field, entries) in byField.enumerated() where !entries.isEmpty {
            args.append(s("\(field)")); args.append(s("\(entries.count)"))
            for e in entries {
                precondition(table.counts[e] > 0)
                args.append(Array(table.bytes(at: e))); args.append(s("\(table.counts[e])"))
                order.append(e)
            }
        }
        let reply = try Self.growScript.run(redis, keys: [], args: args)
        guard let items = reply.elements, items.count == order.count else {
            throw FeatureStoreError.unexpectedReply("grow script returned \(reply)")
        }
        var out = [Int32?](repeating: nil, count: range.count)
        for (k, e) in order.enumerated() { out[e - range.lowerBound] = items[k].integer.flatMap { $0 > 0 ? Int32($0) : nil } }
        return out
    }

    /// `growDictionary(_:entries:)` for a list of counts (duplicates are merged and get the same answer).
    public func growDictionary(counts: [CategoryCount], maxPendingPerField: Int = 0) throws -> [Int32?] {
        var table = CategoryTable(minimumCapacity: counts.count)
        let entries = counts.map { c in
            precondition(c.field >= 0 && c.field < CriteoSchema.categoricalCount && c.count > 0)
            return c.bytes.withUnsafeBytes { table.addCount(field: c.field, bytes: $0, by: c.count) }
        }
        let ids = try growDictionary(table, entries: 0..<table.count, maxPendingPerField: maxPendingPerField)
        return entries.map { ids[$0] }
    }

    /// Snapshot metadata (sr:dict:meta) as strings.
    public func dictionaryMeta() throws -> [String: String] { try hash(layout.dictMeta) }

    /// HGETALL as a String dictionary.
    public func hash(_ key: String) throws -> [String: String] {
        let r = try redis.command(["HGETALL", key])
        guard let e = r.elements else { return [:] }
        var out: [String: String] = [:]
        var i = 0
        while i + 1 < e.count { out[e[i].text ?? ""] = e[i + 1].text ?? ""; i += 2 }
        return out
    }
}

/// A worker's local copy of the shared dictionary: the snapshot (`FeatureStats`, whose checksum
/// `loadSnapshot` verified against Redis) plus every online assignment from sr:dict:log, applied
/// in log order (= id order). Lookups are local; `sync(_:)` tails the log.
///
/// Not thread-safe: one owner.
public struct DictionaryCache: Sendable {
    public private(set) var stats: FeatureStats
    /// Last sr:dict:log entry applied.
    public private(set) var lastLogId: String = "0-0"
    /// Online ids learnt from the log.
    public private(set) var onlineIds = 0

    public init(snapshot: FeatureStats) { self.stats = snapshot }

    /// Id of a category, or nil (then the field's OOV id applies).
    @inline(__always)
    public func id(field: Int, bytes: UnsafeRawBufferPointer) -> Int32? { stats.id(field: field, bytes: bytes) }

    /// Ids of a row's 26 categories (0 = not in the dictionary), looked up together.
    @inline(__always)
    public func categoryIds(of row: CriteoRow, into ids: UnsafeMutablePointer<Int32>) { stats.categoryIds(of: row, into: ids) }

    /// Applies new sr:dict:log entries. Returns how many new ids were learnt. Throws
    /// `FeatureStoreError.dictionaryInconsistent` if the log contradicts the cache.
    @discardableResult
    public mutating func sync(_ store: FeatureStore, maxEntries: Int = 100_000) throws -> Int {
        var learnt = 0
        while learnt < maxEntries {
            let r = try store.redis.command(["XRANGE", store.layout.dictLog, "(" + lastLogId, "+", "COUNT", "10000"])
            guard let entries = r.elements, !entries.isEmpty else { break }
            for entry in entries {
                guard let parts = entry.elements, parts.count == 2, let id = parts[0].text, let kv = parts[1].elements else {
                    throw FeatureStoreError.unexpectedReply("dict log entry \(entry)")
                }
                var field = -1, newId: Int32 = -1
                var cat: [UInt8] = []
                var i = 0
                while i + 1 < kv.count {
                    switch kv[i].text {
                    case "f": field = Int(kv[i + 1].text ?? "") ?? -1
                    case "c": cat = kv[i + 1].bytes ?? []
                    case "i": newId = Int32(kv[i + 1].text ?? "") ?? -1
                    default: break
                    }
                    i += 2
                }
                guard field >= 0 && field < CriteoSchema.categoricalCount && newId >= FeatureIdLayout.firstCategoryId else {
                    throw FeatureStoreError.dictionaryInconsistent("malformed log entry \(id)")
                }
                let known = cat.withUnsafeBytes { stats.id(field: field, bytes: $0) }
                if let known {
                    guard known == newId else {
                        throw FeatureStoreError.dictionaryInconsistent("field \(field) category has id \(known) locally but \(newId) in the log")
                    }
                } else {
                    guard newId == stats.nextId else {
                        throw FeatureStoreError.dictionaryInconsistent(
                            "log entry \(id) assigns id \(newId) but the cache expects \(stats.nextId) next "
                            + "(was the dictionary loaded from another snapshot, or the log trimmed?)")
                    }
                    _ = cat.withUnsafeBytes { stats.append(field: field, bytes: $0, count: 0) }
                    learnt += 1
                    onlineIds += 1
                }
                lastLogId = id
            }
        }
        return learnt
    }
}
