import Foundation
import Checkpoint

// Model tensors ↔ safetensors, shared by every family's checkpoint.

extension ModelTensor {
    /// The tensor as the safetensors writer takes it.
    public var safeTensor: SafeTensor {
        switch storage {
        case .float32(let a): return SafeTensor(name: name, shape: shape, data: .float(a))
        case .int32(let a): return SafeTensor(name: name, shape: shape, data: .int32(a))
        }
    }

    /// Every tensor of a checkpoint's safetensors file, by name (float32 and int32 only).
    public static func read(_ url: URL) throws -> [String: ModelTensor] {
        let file = try SafeTensorsFile(url: url)
        var tensors: [String: ModelTensor] = [:]
        for info in file.tensors {
            switch info.dtype {
            case .f32: tensors[info.name] = ModelTensor(name: info.name, shape: info.shape, storage: .float32(try file.floats(info.name)))
            case .i32: tensors[info.name] = ModelTensor(name: info.name, shape: info.shape, storage: .int32(try file.int32s(info.name)))
            default: throw CheckpointLoadError("tensor \(info.name) has unsupported dtype \(info.dtype.rawValue)")
            }
        }
        return tensors
    }
}
