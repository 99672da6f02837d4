using System.Globalization;

namespace Dynamo.Engine.Serving;

/// <summary>
/// The size of an engine's KV pool and why (<see cref="Decide"/>): given by --kv-cache-memory, or else what the
/// model can use at most, every one of --max-num-seqs sequences at the full context length, capped at
/// --mem-fraction-static of the memory available at start. The pool is allocated once and its pages are touched
/// as blocks are first used, so the process grows to it under load (the prefix cache keeps freed blocks).
/// </summary>
/// <param name="Bytes">Bytes of keys and values the pool holds: <paramref name="Blocks"/> x <paramref name="BytesPerBlock"/>.</param>
/// <param name="Blocks">Blocks in the pool.</param>
/// <param name="BlockSize">Tokens per block.</param>
/// <param name="BytesPerBlock">Keys and values of every layer for <paramref name="BlockSize"/> tokens.</param>
/// <param name="Source">What decided the size.</param>
/// <param name="Derivation">How the size was derived, in words and figures, for the startup log.</param>
/// <param name="ElementType">The keys' and values' element type ("f16", "f32"), when the caller said; the bytes are of it.</param>
public sealed record KvCacheBudget(long Bytes, int Blocks, int BlockSize, long BytesPerBlock, KvCacheSizeSource Source, string Derivation, string? ElementType = null)
{
    /// <summary>
    /// Sizes the pool. With <paramref name="explicitBytes"/> (--kv-cache-memory): as many blocks as fit in it. Else
    /// <paramref name="maxNumSeqs"/> sequences of <paramref name="contextLength"/> tokens, each rounded up to whole
    /// blocks, at most <paramref name="memoryFraction"/> of <paramref name="availableBytes"/>. Never more than
    /// <paramref name="maxBlocks"/> (one layer's array holds at most <see cref="Array.MaxLength"/> elements).
    /// <paramref name="elementType"/> ("f16", "f32") is only said in <see cref="ToString"/>: <paramref name="bytesPerBlock"/> is already of it.
    /// </summary>
    /// <exception cref="ArgumentException">Not one block fits; the message names the flag to raise.</exception>
    public static KvCacheBudget Decide(
        long bytesPerBlock, int blockSize, int contextLength, int maxNumSeqs, long? explicitBytes, double memoryFraction, long availableBytes, int maxBlocks = int.MaxValue, string? elementType = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytesPerBlock, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxNumSeqs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBlocks, 1);
        long bytesPerToken = bytesPerBlock / blockSize;
        long blocks;
        KvCacheSizeSource source;
        string derivation;
        if (explicitBytes is long given)
        {
            blocks = given / bytesPerBlock;
            if (blocks < 1)
            {
                throw new ArgumentException(Invariant($"--kv-cache-memory: {given} bytes hold no KV block ({bytesPerBlock} bytes each at block size {blockSize})"));
            }

            source = KvCacheSizeSource.Flag;
            derivation = Invariant($"--kv-cache-memory {given:N0} bytes");
        }
        else
        {
            long perSequence = (contextLength + (long)blockSize - 1) / blockSize;
            long needed = maxNumSeqs * perSequence;
            long cap = (long)(availableBytes * memoryFraction);
            long capBlocks = cap / bytesPerBlock;
            string need = Invariant($"context {contextLength:N0} x {maxNumSeqs:N0} sequences (--max-num-seqs) x {bytesPerToken:N0} bytes per token = {needed * bytesPerBlock:N0} bytes");
            string capText = Invariant($"{memoryFraction:0.###} of {availableBytes:N0} bytes available = {cap:N0} bytes");
            if (needed <= capBlocks)
            {
                blocks = needed;
                source = KvCacheSizeSource.Model;
                derivation = $"the model's need, {need}; under the cap of {capText} (--mem-fraction-static)";
            }
            else
            {
                blocks = capBlocks;
                source = KvCacheSizeSource.MemoryCap;
                derivation = $"the cap of {capText} (--mem-fraction-static); the model's need is {need}";
                if (blocks < 1)
                {
                    throw new ArgumentException(Invariant($"--mem-fraction-static: {capText} hold no KV block ({bytesPerBlock} bytes each at block size {blockSize}); raise it or set --kv-cache-memory"));
                }
            }
        }

        if (blocks > maxBlocks)
        {
            blocks = maxBlocks;
            derivation += Invariant($"; limited to {maxBlocks:N0} blocks (the largest array of one layer)");
        }

        return new KvCacheBudget(blocks * bytesPerBlock, (int)blocks, blockSize, bytesPerBlock, source, derivation, elementType);
    }

    /// <summary>One line: bytes, blocks and the derivation.</summary>
    public override string ToString() =>
        Invariant($"{Bytes:N0} bytes = {Blocks:N0} blocks of {BlockSize} tokens ({BytesPerBlock:N0} bytes each{(ElementType is null ? "" : $", keys and values in {ElementType}")}): {Derivation}");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
