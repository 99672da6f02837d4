namespace Dynamo.Engine.KvCache;

/// <summary>The names and sizes of the <see cref="KvCacheDtype"/>s: one place parses the flag and the wire's "dtype".</summary>
public static class KvCacheDtypes
{
    /// <summary>The flag's and the KV transfer layout's name: "f32" or "f16".</summary>
    public static string Name(this KvCacheDtype dtype) => dtype switch
    {
        KvCacheDtype.F32 => "f32",
        KvCacheDtype.F16 => "f16",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a KV cache element type"),
    };

    /// <summary>Bytes of one key or value element.</summary>
    public static int ElementBytes(this KvCacheDtype dtype) => dtype switch
    {
        KvCacheDtype.F32 => sizeof(float),
        KvCacheDtype.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a KV cache element type"),
    };

    /// <summary>The element type named <paramref name="name"/> ("f16", "f32"; any case), or false.</summary>
    public static bool TryParse(string? name, out KvCacheDtype dtype)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "f32":
                dtype = KvCacheDtype.F32;
                return true;
            case "f16":
                dtype = KvCacheDtype.F16;
                return true;
            default:
                dtype = default;
                return false;
        }
    }

    /// <summary>The element type named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">Not a name of one; the message names the flag.</exception>
    public static KvCacheDtype Parse(string name) =>
        TryParse(name, out KvCacheDtype dtype) ? dtype : throw new ArgumentException($"--kv-cache-dtype: '{name}' is not f16 or f32");
}
