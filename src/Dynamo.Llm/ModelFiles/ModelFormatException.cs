namespace Dynamo.Llm.ModelFiles;

/// <summary>
/// A model, tokenizer or template file that cannot be used. The message is one line that names the
/// file and the problem; the command line prints it as it is, without a stack trace.
/// </summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string path, string problem)
        : base($"{path}: {problem}")
    {
        Path = path;
        Problem = problem;
    }

    public ModelFormatException(string path, string problem, Exception inner)
        : base($"{path}: {problem}", inner)
    {
        Path = path;
        Problem = problem;
    }

    public string Path { get; }
    public string Problem { get; }
}
