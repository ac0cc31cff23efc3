// IdKeyTable: the keys behind a streaming id space (users or items), as RL checkpoints carry
// them (`users.keys`, `items.keys`), so evaluation and serving can turn a request's item and
// user keys into the model's ids and its top items back into keys without Redis.

/// Keys by id and ids by key. Ids are the behaviour id spaces' (items from 2, users from 1);
/// gaps are allowed (an id whose key is not known yet).
public struct IdKeyTable: Sendable, Equatable {
    /// `keyOfId[id]`: the key, nil for ids without one (0, 1, gaps).
    public private(set) var keyOfId: [String?] = []
    public private(set) var idOfKey: [String: Int32] = [:]

    public init() {}

    public var count: Int { idOfKey.count }
    /// The largest id with a key + 1 (0 when empty).
    public var idLimit: Int { keyOfId.count }

    public func key(_ id: Int32) -> String? { id >= 0 && Int(id) < keyOfId.count ? keyOfId[Int(id)] : nil }
    public func id(_ key: String) -> Int32? { idOfKey[key] }

    /// Records `key` ↔ `id`. A key already known keeps its first id (ids are assigned once).
    public mutating func set(_ key: String, id: Int32) {
        guard id >= 0, idOfKey[key] == nil else { return }
        if Int(id) >= keyOfId.count { keyOfId.append(contentsOf: repeatElement(nil, count: Int(id) + 1 - keyOfId.count)) }
        keyOfId[Int(id)] = key
        idOfKey[key] = id
    }

    // MARK: Encoding (little-endian)
    //   u8 version = 1, u32 count, then per entry in id order: i32 id, u16 key length, key bytes (UTF-8)

    public func encoded() -> [UInt8] {
        var out: [UInt8] = [1]
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(UInt32(count))
        for (id, key) in keyOfId.enumerated() {
            guard let key else { continue }
            let bytes = Array(key.utf8.prefix(Int(UInt16.max)))
            put(Int32(id)); put(UInt16(bytes.count)); out.append(contentsOf: bytes)
        }
        return out
    }

    /// Decodes `encoded()`; throws a message naming what is wrong (`what` names the file).
    public static func decode(_ bytes: [UInt8], what: String) throws(IdKeyTableError) -> IdKeyTable {
        guard bytes.count >= 5, bytes[0] == 1 else {
            throw IdKeyTableError("\(what): \(bytes.count) bytes with version \(bytes.first.map(String.init) ?? "none") (expected version 1)")
        }
        var p = 1
        func u(_ n: Int) throws(IdKeyTableError) -> UInt64 {
            guard p + n <= bytes.count else { throw IdKeyTableError("\(what): truncated at byte \(p) of \(bytes.count)") }
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(bytes[p + k]) << (8 * UInt64(k)) }
            p += n
            return v
        }
        let n = Int(try u(4))
        var t = IdKeyTable()
        t.idOfKey.reserveCapacity(n)
        for _ in 0..<n {
            let id = Int32(bitPattern: UInt32(try u(4))), len = Int(try u(2))
            guard id >= 0, p + len <= bytes.count else { throw IdKeyTableError("\(what): entry with id \(id) and \(len) key bytes runs past the end") }
            let key = String(decoding: bytes[p..<(p + len)], as: UTF8.self)
            p += len
            guard t.idOfKey[key] == nil, t.key(id) == nil else { throw IdKeyTableError("\(what): key '\(key)' or id \(id) appears twice") }
            t.set(key, id: id)
        }
        guard p == bytes.count else { throw IdKeyTableError("\(what): \(bytes.count - p) bytes after the last of \(n) entries") }
        return t
    }
}

public struct IdKeyTableError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// The user and item keys of an RL model: its checkpoints' sidecar files.
public struct BehaviorKeys: Sendable, Equatable {
    public static let usersFileName = "users.keys", itemsFileName = "items.keys"
    public var users = IdKeyTable()
    public var items = IdKeyTable()
    public init(users: IdKeyTable = IdKeyTable(), items: IdKeyTable = IdKeyTable()) { self.users = users; self.items = items }

    /// The sidecar files, by name.
    public var files: [String: [UInt8]] { [Self.usersFileName: users.encoded(), Self.itemsFileName: items.encoded()] }

    /// From sidecar files by name (absent files: empty tables — a model trained before keys were
    /// recorded); throws on a file that does not decode.
    public static func decode(files: [String: [UInt8]], what: String) throws(IdKeyTableError) -> BehaviorKeys {
        var k = BehaviorKeys()
        if let u = files[usersFileName] { k.users = try IdKeyTable.decode(u, what: "\(what)/\(usersFileName)") }
        if let i = files[itemsFileName] { k.items = try IdKeyTable.decode(i, what: "\(what)/\(itemsFileName)") }
        return k
    }
}
