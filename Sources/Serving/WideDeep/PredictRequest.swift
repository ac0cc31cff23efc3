// POST /v1/predict bodies → parsed Criteo rows, through the shared parser:
//
//   {"rows": ["<39 tab-separated fields: I1…I13, C1…C26>", …]}
//   {"instances": [{"I1": 3, "I2": 0.5, "C1": "68fd1e64", …}, …]}
//
// "rows" go through `CriteoParser(labels: .optional)` exactly as the feature workers parse them
// (a labelled 40-field row is accepted and its label ignored). "instances" fill a `CriteoRow`
// with the same value rules: a missing or null key is a missing value; dense values are JSON
// numbers (integers or floats) within Float32 range; categories are strings without tabs or line
// breaks. Either way the checkpoint's `FeatureEncoder` turns the row into ids and weights, so
// there is one encoding, shared with training.
import Foundation
import Features

public enum PredictRequest {
    static let denseKeys: [String: Int] = Dictionary(uniqueKeysWithValues: (0..<CriteoSchema.denseCount).map { ("I\($0 + 1)", $0) })
    static let categoricalKeys: [String: Int] = Dictionary(uniqueKeysWithValues: (0..<CriteoSchema.categoricalCount).map { ("C\($0 + 1)", $0) })

    /// Parses a request body into rows, or throws a `RequestError` (status 400 or 413) that says
    /// what is wrong and where.
    public static func parse(_ body: some Collection<UInt8>, limits: RequestLimits) throws(RequestError) -> [CriteoRow] {
        let data = Data(body)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw RequestError(400, "body is not valid JSON (\(JSONInput.shortDescription(error))); send {\"rows\": [...]} or {\"instances\": [...]}")
        }
        guard let object = json as? [String: Any] else {
            throw RequestError(400, "body must be a JSON object: {\"rows\": [...]} or {\"instances\": [...]}")
        }
        let unknown = object.keys.filter { $0 != "rows" && $0 != "instances" }.sorted()
        if !unknown.isEmpty {
            throw RequestError(400, "unknown key\(unknown.count > 1 ? "s" : "") \(unknown.map { "\"\($0)\"" }.joined(separator: ", ")); expected exactly one of \"rows\" or \"instances\"")
        }
        switch (object["rows"], object["instances"]) {
        case (.some, .some):
            throw RequestError(400, "send either \"rows\" or \"instances\", not both")
        case (nil, nil):
            throw RequestError(400, "missing \"rows\" or \"instances\"")
        case (let rows?, nil):
            guard let list = rows as? [Any] else { throw RequestError(400, "\"rows\" must be an array of strings") }
            try checkCount(list.count, limits: limits, what: "rows")
            return try parseRows(list)
        case (nil, let instances?):
            guard let list = instances as? [Any] else { throw RequestError(400, "\"instances\" must be an array of objects") }
            try checkCount(list.count, limits: limits, what: "instances")
            return try parseInstances(list)
        }
    }

    static func checkCount(_ n: Int, limits: RequestLimits, what: String) throws(RequestError) {
        if n == 0 { throw RequestError(400, "\"\(what)\" is empty; send at least one") }
        if n > limits.maxRows {
            throw RequestError(413, "\(n) \(what) in one request; the limit is \(limits.maxRows) (--max-rows): split the request")
        }
    }

    static func parseRows(_ list: [Any]) throws(RequestError) -> [CriteoRow] {
        let parser = CriteoParser(labels: .optional)
        var rows: [CriteoRow] = []
        rows.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            guard let line = item as? String else {
                throw RequestError(400, "rows[\(i)] must be a string (a tab-separated Criteo row without the label)")
            }
            do {
                rows.append(try parser.parse(line))
            } catch {
                throw RequestError(400, "rows[\(i)]: \(error.reason.rawValue): \(error.detail)", reason: error.reason.rawValue)
            }
        }
        return rows
    }

    static func parseInstances(_ list: [Any]) throws(RequestError) -> [CriteoRow] {
        var rows: [CriteoRow] = []
        rows.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            guard let object = item as? [String: Any] else {
                throw RequestError(400, "instances[\(i)] must be an object like {\"I1\": 3, \"C1\": \"68fd1e64\"}")
            }
            var dense = [Float?](repeating: nil, count: CriteoSchema.denseCount)
            var categories = [[UInt8]](repeating: [], count: CriteoSchema.categoricalCount)
            for key in object.keys.sorted() {
                let value = object[key]!
                if let d = denseKeys[key] {
                    if value is NSNull { continue }
                    guard let number = value as? NSNumber, !JSONInput.isBool(number) else {
                        throw RequestError(400, "instances[\(i)].\(key) must be a number or null", reason: RejectReason.nonNumericDense.rawValue)
                    }
                    let x = number.doubleValue
                    guard x.isFinite else {
                        throw RequestError(400, "instances[\(i)].\(key) is not a finite number", reason: RejectReason.nonNumericDense.rawValue)
                    }
                    guard abs(x) <= Double(Float.greatestFiniteMagnitude) else {
                        throw RequestError(400, "instances[\(i)].\(key) is out of Float32 range: \(x)", reason: RejectReason.denseOutOfRange.rawValue)
                    }
                    dense[d] = Float(x)
                } else if let c = categoricalKeys[key] {
                    if value is NSNull { continue }
                    guard let text = value as? String else {
                        throw RequestError(400, "instances[\(i)].\(key) must be a string or null")
                    }
                    let bytes = Array(text.utf8)
                    if bytes.contains(where: { $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                        throw RequestError(400, "instances[\(i)].\(key) contains a tab or line break")
                    }
                    categories[c] = bytes
                } else {
                    throw RequestError(400, "instances[\(i)] has unknown key \"\(key)\"; allowed keys are I1…I\(CriteoSchema.denseCount) and C1…C\(CriteoSchema.categoricalCount)")
                }
            }
            rows.append(CriteoRow(label: nil, dense: dense, categories: categories))
        }
        return rows
    }
}
