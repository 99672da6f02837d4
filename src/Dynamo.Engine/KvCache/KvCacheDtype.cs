namespace Dynamo.Engine.KvCache;

/// <summary>
/// The element type a <see cref="PagedKvCache"/> stores keys and values in (<c>--kv-cache-dtype</c>): F16 halves the
/// bytes every decode step reads (llama.cpp's default); F32 stores the pass's floats as they are. Names on the wire and
/// on the command line: <see cref="KvCacheDtypes.Name"/>.
/// </summary>
public enum KvCacheDtype
{
    /// <summary>IEEE binary32, 4 bytes: exact.</summary>
    F32 = 0,

    /// <summary>IEEE binary16, 2 bytes: each key and value rounded to the nearest half (ties to even) when stored.</summary>
    F16 = 1,
}
