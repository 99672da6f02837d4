using System.IO.MemoryMappedFiles;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>A read-only memory mapping of a whole file with its base pointer acquired once.</summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private bool _disposed;

    private MappedFile(string path, MemoryMappedFile file, MemoryMappedViewAccessor view, long length)
    {
        Path = path;
        _file = file;
        _view = view;
        Length = length;
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        Pointer = p + _view.PointerOffset;
    }

    public string Path { get; }
    public long Length { get; }
    public byte* Pointer { get; }

    public static MappedFile Open(string path)
    {
        // The length and the mapping come from one open handle: a symbolic link (a Hugging Face cache entry, a
        // renamed copy) is followed to the file it names, and a file replaced in between cannot pair one file's
        // length with another's bytes.
        FileStream stream;
        long length;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            length = stream.Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot read: {e.Message}", e);
        }

        if (length == 0)
        {
            stream.Dispose();
            throw new ModelFormatException(path, "file is empty");
        }

        MemoryMappedFile? file = null;
        try
        {
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            MemoryMappedViewAccessor view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new MappedFile(path, file, view, length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (file is null)
            {
                stream.Dispose();
            }

            file?.Dispose();
            throw new ModelFormatException(path, $"cannot map: {e.Message}", e);
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
