using System.Buffers.Binary;
using System.IO.Compression;
using System.Security.Cryptography;
using Dynamo.Runtime.Discovery;

namespace Dynamo.Runtime;

/// <summary>
/// Content-addressed blobs in discovery, for what a frontend on another host needs to preprocess
/// (tokenizer files, chat templates): <c>v1/blobs/{sha256}/{chunk:d4}</c>, gzip-compressed and cut into
/// 512 KiB chunks (etcd refuses requests over 1.5 MiB by default), written without a lease because the
/// same content serves every instance of a model; they are immutable, so rewriting is harmless.
/// </summary>
public sealed class BlobStore
{
    /// <summary>The discovery prefix of every blob.</summary>
    public const string Root = "v1/blobs/";

    private const int ChunkSize = 512 * 1024;
    private readonly IDiscovery _discovery;

    internal BlobStore(IDiscovery discovery)
    {
        _discovery = discovery;
    }

    /// <summary>The lower-case hex SHA-256 of <paramref name="content"/>, the blob's name.</summary>
    public static string HashOf(ReadOnlySpan<byte> content) => Convert.ToHexStringLower(SHA256.HashData(content));

    /// <summary>Stores <paramref name="content"/> unless it is there already; returns its hash.</summary>
    public async Task<string> PutAsync(ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
    {
        string hash = HashOf(content.Span);
        if (await _discovery.GetAsync($"{Root}{hash}/0000", cancellationToken).ConfigureAwait(false) is not null)
        {
            return hash;
        }

        using var compressed = new MemoryStream();
        await using (var gzip = new GZipStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            await gzip.WriteAsync(content, cancellationToken).ConfigureAwait(false);
        }

        ReadOnlyMemory<byte> bytes = compressed.GetBuffer().AsMemory(0, (int)compressed.Length);
        int chunks = Math.Max(1, (bytes.Length + ChunkSize - 1) / ChunkSize);

        // Chunk 0 last: its presence means the blob is complete.
        for (int i = chunks - 1; i >= 0; i--)
        {
            int start = i * ChunkSize;
            ReadOnlyMemory<byte> chunk = bytes[start..Math.Min(bytes.Length, start + ChunkSize)];
            byte[] value;
            if (i == 0)
            {
                value = new byte[4 + chunk.Length];
                BinaryPrimitives.WriteInt32LittleEndian(value, chunks);
                chunk.Span.CopyTo(value.AsSpan(4));
            }
            else
            {
                value = chunk.ToArray();
            }

            await _discovery.PutAsync($"{Root}{hash}/{i:d4}", value, DiscoveryPutOptions.Persistent, cancellationToken).ConfigureAwait(false);
        }

        return hash;
    }

    /// <summary>The blob named <paramref name="hash"/>, checked against its hash; null if absent.</summary>
    public async Task<byte[]?> GetAsync(string hash, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(hash);
        DiscoveryEntry? first = await _discovery.GetAsync($"{Root}{hash}/0000", cancellationToken).ConfigureAwait(false);
        if (first is null)
        {
            return null;
        }

        int chunks = BinaryPrimitives.ReadInt32LittleEndian(first.Value.Span);
        using var compressed = new MemoryStream();
        compressed.Write(first.Value.Span[4..]);
        for (int i = 1; i < chunks; i++)
        {
            DiscoveryEntry entry = await _discovery.GetAsync($"{Root}{hash}/{i:d4}", cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidDataException($"blob {hash} is missing chunk {i} of {chunks}");
            compressed.Write(entry.Value.Span);
        }

        compressed.Position = 0;
        using var content = new MemoryStream();
        await using (var gzip = new GZipStream(compressed, CompressionMode.Decompress))
        {
            await gzip.CopyToAsync(content, cancellationToken).ConfigureAwait(false);
        }

        byte[] result = content.ToArray();
        if (HashOf(result) != hash)
        {
            throw new InvalidDataException($"blob {hash} does not match its hash");
        }

        return result;
    }
}
