namespace Dynamo.Llm.Kv;

/// <summary>
/// The keys and values of a sequence's first <see cref="KvTransferLayout.TokenCount"/> tokens, moved from one
/// engine to another (disaggregated prefill and decode): the layout descriptor and the contiguous buffer it
/// describes.
/// </summary>
public sealed record KvTransferPayload(KvTransferLayout Layout, ReadOnlyMemory<byte> Data);
