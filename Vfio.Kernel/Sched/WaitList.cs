// An intrusive FIFO of sleeping tasks. A task sleeps on at most one object at a time, so
// the links live in the task itself and waiting allocates nothing. Every list is
// protected by its owner's internal lock.

namespace Vfio.Kernel;

internal struct WaitList
{
    private KTask? _head;
    private KTask? _tail;

    public readonly bool IsEmpty => _head is null;

    public readonly KTask? First => _head;

    public void Add(KTask t, object owner)
    {
        t.WaitListOwner = owner;
        t.WaitPrev = _tail;
        t.WaitNext = null;
        if (_tail is null)
        {
            _head = t;
        }
        else
        {
            _tail.WaitNext = t;
        }

        _tail = t;
    }

    /// <summary>Removes <paramref name="t"/> if it is on this list; returns whether it was.</summary>
    public bool Remove(KTask t, object owner)
    {
        if (!ReferenceEquals(t.WaitListOwner, owner))
        {
            return false;
        }

        if (t.WaitPrev is null)
        {
            _head = t.WaitNext;
        }
        else
        {
            t.WaitPrev.WaitNext = t.WaitNext;
        }

        if (t.WaitNext is null)
        {
            _tail = t.WaitPrev;
        }
        else
        {
            t.WaitNext.WaitPrev = t.WaitPrev;
        }

        t.WaitNext = t.WaitPrev = null;
        t.WaitListOwner = null;
        return true;
    }

    public KTask? RemoveFirst(object owner)
    {
        KTask? t = _head;
        if (t is not null)
        {
            Remove(t, owner);
        }

        return t;
    }
}
