using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Frontend.Http;

/// <summary>What a choice's worker stream produced: a delta (with how many tokens it took), or the error that ended it.</summary>
internal readonly record struct ChoiceEvent(int Index, ChoiceDelta Delta, int NewTokens, OpenAiException? Error);
