// Models include/linux/kref.h (v6.12): a refcount_t plus the release convention — the
// put that drops the last reference calls release().

namespace Vfio.Kernel;

/// <summary><c>struct kref</c>: reference counting with a release callback.</summary>
public sealed class KRef
{
    /// <summary>kref_init(): the count starts at 1.</summary>
    public KRef(SimKernel kernel, string name)
    {
        RefCount = new RefCount(kernel, name, 1);
    }

    /// <summary>The underlying refcount_t.</summary>
    public RefCount RefCount { get; }

    /// <summary>kref_read().</summary>
    public int Read() => RefCount.Read();

    /// <summary>kref_get().</summary>
    public void Get() => RefCount.Inc();

    /// <summary>kref_get_unless_zero().</summary>
    public bool GetUnlessZero() => RefCount.IncNotZero();

    /// <summary>kref_put(): drops a reference; the last one calls <paramref name="release"/>. Returns true if it did.</summary>
    public bool Put(Action release)
    {
        ArgumentNullException.ThrowIfNull(release);
        if (!RefCount.DecAndTest())
        {
            return false;
        }

        release();
        return true;
    }

    /// <summary>
    /// kref_put_mutex(): as <see cref="Put"/>, but the last put takes <paramref name="mutex"/>
    /// and calls <paramref name="release"/> with it held; release must unlock it.
    /// </summary>
    public bool PutMutex(Action release, KMutex mutex)
    {
        ArgumentNullException.ThrowIfNull(release);
        if (!RefCount.DecAndMutexLock(mutex))
        {
            return false;
        }

        release();
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() => $"kref {RefCount.Name} = {RefCount.Value}";
}
